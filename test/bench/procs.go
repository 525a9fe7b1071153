//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started: a backend role, the gateway or a
// peer proxy. Its output is scanned line by line for readiness and the last
// lines are kept for error messages.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	tail  []string
	ready chan map[string]string // receives once, from the ready matcher
}

// readyFunc inspects one output line; it returns the facts of a ready line
// (addresses) and true, or false for other lines.
type readyFunc func(line string) (map[string]string, bool)

// startChild starts bin and, when ready is not nil, waits up to timeout for
// a line it accepts. The process gets its own process group, so that stop
// reaches workers a master process forked (nginx).
func startChild(ctx context.Context, name, bin string, args, env []string, dir string, ready readyFunc, timeout time.Duration) (*child, map[string]string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = cmd.Stdout // one pipe, one scanner
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), ready: make(chan map[string]string, 1)}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go c.scan(stdout, ready)
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	if ready == nil {
		return c, nil, nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case facts := <-c.ready:
		return c, facts, nil
	case <-c.done:
		return nil, nil, fmt.Errorf("%s exited before it was ready:\n%s", name, c.lastLines())
	case <-t.C:
		c.stop()
		return nil, nil, fmt.Errorf("%s not ready within %s:\n%s", name, timeout, c.lastLines())
	case <-ctx.Done():
		c.stop()
		return nil, nil, ctx.Err()
	}
}

func (c *child) scan(r io.Reader, ready readyFunc) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := ready == nil
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 40 {
			c.tail = c.tail[len(c.tail)-40:]
		}
		c.mu.Unlock()
		if !sent {
			if facts, ok := ready(line); ok {
				c.ready <- facts
				sent = true
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (c *child) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits; after 10 s it kills.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	}
}

// readyWords matches a "ready k=v ..." line of a harness role.
func readyWords(line string) (map[string]string, bool) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ready" {
		return nil, false
	}
	facts := map[string]string{}
	for _, kv := range f[1:] {
		if k, v, ok := strings.Cut(kv, "="); ok {
			facts[k] = v
		}
	}
	return facts, true
}

// waitTLS polls addr until a TLS handshake succeeds: the readiness check of
// peers that print nothing when ready.
func waitTLS(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready:\n%s", c.name, c.lastLines())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready on %s within %s: %v\n%s", c.name, addr, timeout, err, c.lastLines())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait): // poll interval; the handshake is the check
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// treeRSS is the resident memory in bytes of pid and all its descendants
// (nginx workers, for example), from /proc/<pid>/status VmRSS.
func treeRSS(pid int) (int64, error) {
	children := map[int][]int{}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		p, _ := strconv.Atoi(filepath.Base(d))
		children[ppid] = append(children[ppid], p)
	}
	var total int64
	var found bool
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		rss, err := processRSS(p)
		if err == nil {
			total += rss
			found = true
		}
		queue = append(queue, children[p]...)
	}
	if !found {
		return 0, fmt.Errorf("no process %d", pid)
	}
	return total, nil
}

func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// raiseFileLimit lifts the soft limit on open files to the hard limit; the
// children started afterwards inherit it (10,000 idle connections need
// more than the usual 1024).
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}
