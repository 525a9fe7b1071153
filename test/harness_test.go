package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a child process started by a test: the gateway, pebble, or
// pebble-challtestsrv. Its standard error is kept line by line so that tests
// can wait for a log line; its standard output is kept whole. t.Cleanup kills
// it if the test has not waited for it, and logs its output if the test failed
// (or always, with E2E_LOGS=1 go test -v).
type proc struct {
	name   string
	cmd    *exec.Cmd
	stderr *lineLog
	stdout *lockedBuffer
	done   chan struct{} // closed once the process has exited
	state  *os.ProcessState
}

// procSpec describes a process to start.
type procSpec struct {
	name string   // for messages
	bin  string   // executable
	args []string // arguments
	env  []string // added to the inherited environment (less GATEWAY_*)
	dir  string   // working directory; "" for the test's
}

func startProc(t *testing.T, s procSpec) *proc {
	t.Helper()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Env = append(childEnv(), s.env...)
	p := &proc{
		name:   s.name,
		cmd:    cmd,
		stderr: newLineLog(),
		stdout: &lockedBuffer{},
		done:   make(chan struct{}),
	}
	cmd.Stderr = p.stderr
	if s.bin == gatewayBin {
		// Kept for the log-hygiene scan after the run (proof_secrets_test.go).
		cmd.Stderr = io.MultiWriter(p.stderr, e2eLogFile(t, s.name))
	}
	cmd.Stdout = p.stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.name, err)
	}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		p.stderr.close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("--- %s %s\n--- stdout:\n%s--- stderr:\n%s", s.name, strings.Join(s.args, " "),
				p.stdout.String(), strings.Join(p.stderr.all(), "\n"))
		}
	})
	return p
}

// childEnv is the test's environment without GATEWAY_* variables, so a
// developer's shell cannot change what the tests run.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWAY_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// waitExit waits for the process to exit and returns its exit code; a
// process killed by a signal counts as -1.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.name, timeout)
	}
	return p.state.ExitCode()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logEntry is one JSON log line of the gateway, decoded.
type logEntry map[string]any

func (e logEntry) str(key string) string {
	s, _ := e[key].(string)
	return s
}

// waitLog waits until a line of standard error satisfies match and returns
// it decoded as JSON (nil for a line that is not JSON). It fails the test when
// the process exits or the timeout passes first.
func (p *proc) waitLog(t *testing.T, timeout time.Duration, what string, match func(line string, e logEntry) bool) logEntry {
	t.Helper()
	return p.waitLogAfter(t, 0, timeout, what, match)
}

// mark is the number of lines of standard error so far, for waitLogAfter.
func (p *proc) mark() int { return len(p.stderr.all()) }

// waitLogAfter is waitLog looking only at lines after the first n.
func (p *proc) waitLogAfter(t *testing.T, n int, timeout time.Duration, what string, match func(line string, e logEntry) bool) logEntry {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := n; ; {
		lines, changed, closed := p.stderr.since(i)
		for _, line := range lines {
			e := decodeLog(line)
			if match(line, e) {
				return e
			}
		}
		i += len(lines)
		if closed {
			t.Fatalf("%s exited (%v) before logging %s", p.name, p.state, what)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s did not log %s within %s", p.name, what, timeout)
		}
	}
}

func decodeLog(line string) logEntry {
	var e logEntry
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return nil
	}
	return e
}

// msgIs matches a JSON log line by its message.
func msgIs(msg string) func(string, logEntry) bool {
	return func(_ string, e logEntry) bool { return e.str("msg") == msg }
}

// lineLog is an io.Writer that keeps what is written as lines and lets
// readers wait for more.
type lineLog struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced on every new line
	closed  bool
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(b), nil
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.lines = append(l.lines, string(l.partial))
		l.partial = nil
	}
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
}

// since returns the lines from index i on, a channel closed when more
// arrive, and whether the writer has finished.
func (l *lineLog) since(i int) (lines []string, changed <-chan struct{}, closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[i:]...), l.changed, l.closed
}

func (l *lineLog) all() []string {
	lines, _, _ := l.since(0)
	return lines
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gateway is a running `gateway run` and the addresses it reported ready on.
type gateway struct {
	*proc
	httpsAddr    string
	redirectAddr string
}

// startGateway runs `gateway run --config FILE` and waits for "gateway ready".
func startGateway(t *testing.T, configFile string, env ...string) *gateway {
	t.Helper()
	p := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", configFile}, env: env})
	ready := p.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))
	return &gateway{proc: p, httpsAddr: ready.str("https_addr"), redirectAddr: ready.str("redirect_addr")}
}

// stop sends SIGTERM and expects a clean exit.
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	g.signal(t, syscall.SIGTERM)
	if code := g.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gateway exited %d after SIGTERM, want 0", code)
	}
}

// cliResult is what a short-lived gateway command produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs a gateway command that is expected to finish by itself.
func runCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBin, args...)
	cmd.Env = append(childEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	saveLog(t, "gateway-"+strings.Join(args[:min(len(args), 2)], "-"), stderr.Bytes())
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		t.Fatalf("gateway %s: %v\n%s", strings.Join(args, " "), err, res)
	}
	return res
}
