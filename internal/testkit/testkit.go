// Package testkit holds the two helpers every test package had written for
// itself: waiting for a condition, and a port that is free. It is imported
// by tests and by the benchmark program, never by the gateway.
package testkit

import (
	"errors"
	"net"
	"time"
)

// TB is what the helpers need of a test: testing.TB has it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// DefaultWait is how long EventuallyTrue waits.
const DefaultWait = 10 * time.Second

// Eventually calls f until it returns nil, or fails tb with f's last error
// once timeout has passed. It polls every 5 ms at first, then less often
// (up to every 100 ms): f is the readiness check, the interval only spaces
// the checks out.
func Eventually(tb TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	if err := poll(timeout, f); err != nil {
		tb.Fatalf("%s: not done within %s: %v", what, timeout, err)
	}
}

// EventuallyTrue is Eventually for a condition (a counter another goroutine
// updates, a state reached), within DefaultWait.
func EventuallyTrue(tb TB, what string, cond func() bool) {
	tb.Helper()
	err := poll(DefaultWait, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		tb.Fatalf("timed out after %s waiting for %s", DefaultWait, what)
	}
}

var errNotYet = errors.New("condition not met")

// poll calls f until it returns nil or timeout passes, and returns f's last
// error.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// the programs that must be told their port before they start (pebble,
// nginx, a config file). Anything that can take a listener should take one
// instead: the port may be taken again before it is used.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePort is FreePort that fails tb on error.
func MustFreePort(tb TB) int {
	tb.Helper()
	port, err := FreePort()
	if err != nil {
		tb.Fatalf("finding a free port: %v", err)
	}
	return port
}
