package testkit

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a TB that records a failure instead of stopping the test.
type recorder struct{ failed string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	var calls atomic.Int32
	r := &recorder{}
	Eventually(r, time.Second, "third call", func() error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if r.failed != "" || calls.Load() != 3 {
		t.Fatalf("failed %q after %d calls, want success on the third", r.failed, calls.Load())
	}
	Eventually(r, 50*time.Millisecond, "never", func() error { return errors.New("backend down") })
	if !strings.Contains(r.failed, "never") || !strings.Contains(r.failed, "backend down") {
		t.Errorf("failure %q, want what was awaited and the last error", r.failed)
	}
}

func TestEventuallyTrue(t *testing.T) {
	r := &recorder{}
	var n atomic.Int32
	EventuallyTrue(r, "counter", func() bool { return n.Add(1) == 2 })
	if r.failed != "" {
		t.Fatalf("failed: %s", r.failed)
	}
}

func TestFreePort(t *testing.T) {
	port := MustFreePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	ln.Close()
}
