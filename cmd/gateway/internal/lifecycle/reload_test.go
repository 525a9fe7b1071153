package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/sqltunnel"
)

// harness is a gateway started on loopback ports with the internal CA,
// whose reloads read next (or fail with loadErr).
type harness struct {
	t       *testing.T
	g       *Gateway
	next    configs.Config
	loadErr error
	logs    *observer.ObservedLogs
}

// baseConfig serves one site and two SQL listeners, a and b, on ports the
// system picks; nothing upstream is ever dialled.
func baseConfig(t *testing.T) configs.Config {
	t.Helper()
	cfg, err := configs.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Storage = t.TempDir()
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.DrainTimeout = time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.RedirectListen = ""
	cfg.HTTP.Sites = []configs.Site{{Hosts: []string{"www.test"}, Upstreams: []string{"http://127.0.0.1:9"}}}
	cfg.SQL = []configs.SQLListener{
		sqlCfg("a", "127.0.0.1:0", "127.0.0.1:9"),
		sqlCfg("b", "127.0.0.1:0", "127.0.0.1:9"),
	}
	return cfg
}

func startHarness(t *testing.T, cfg configs.Config) *harness {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("base configuration: %v", err)
	}
	core, logs := observer.New(zap.InfoLevel)
	h := &harness{t: t, next: cfg, logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := Start(ctx, cfg, zap.New(core), Options{
		Load: func() (*configs.Loaded, error) {
			if h.loadErr != nil {
				return nil, h.loadErr
			}
			next := h.next
			if err := next.Validate(); err != nil {
				return nil, err
			}
			return &configs.Loaded{Config: next}, nil
		},
		Notifier: nopNotifier{},
	})
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	h.g = g
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	return h
}

type nopNotifier struct{}

func (nopNotifier) Ready(string)                   {}
func (nopNotifier) Reloading()                     {}
func (nopNotifier) Stopping(string, time.Duration) {}

// reload applies mutate to a copy of the running configuration and reloads.
func (h *harness) reload(mutate func(*configs.Config)) error {
	h.t.Helper()
	next := h.g.cfg
	next.SQL = append([]configs.SQLListener(nil), next.SQL...)
	next.HTTP.Sites = append([]configs.Site(nil), next.HTTP.Sites...)
	mutate(&next)
	h.next = next
	return h.g.Reload()
}

// freeAddr is a loopback address nothing listens on (as of now).
func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testkit.MustFreePort(t))
}

// takenAddr is a loopback address the test holds until it ends.
func takenAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// bindable reports whether addr is free again (a refused reload released it).
func bindable(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// snapshot is what the gateway serves, to compare before and after.
type snapshot struct {
	addrs     Addrs
	listeners map[string]*sqltunnel.Listener
	cfg       configs.Config
}

func (h *harness) snapshot() snapshot {
	s := snapshot{addrs: h.g.Addrs(), listeners: map[string]*sqltunnel.Listener{}, cfg: h.g.cfg}
	for _, l := range h.g.sql {
		s.listeners[l.Name()] = l
	}
	return s
}

// unchanged fails unless the gateway serves exactly what before says, on
// sockets that still accept.
func (h *harness) unchanged(before snapshot) {
	h.t.Helper()
	after := h.snapshot()
	if len(after.listeners) != len(before.listeners) {
		h.t.Errorf("sql listeners: %d after, %d before", len(after.listeners), len(before.listeners))
	}
	for name, l := range before.listeners {
		if after.listeners[name] != l {
			h.t.Errorf("sql listener %s was replaced", name)
		}
		if !accepts(l.Addr().String()) {
			h.t.Errorf("sql listener %s (%s) no longer accepts", name, l.Addr())
		}
	}
	if a, b := after.addrs.HTTPS, before.addrs.HTTPS; a.String() != b.String() || !accepts(a.String()) {
		h.t.Errorf("https front: %v after, %v before", a, b)
	}
	if a, b := after.addrs.Admin, before.addrs.Admin; a.String() != b.String() || !accepts(a.String()) {
		h.t.Errorf("admin endpoint: %v after, %v before", a, b)
	}
	if after.cfg.SQL[0].Upstream.Address != before.cfg.SQL[0].Upstream.Address {
		h.t.Error("the running configuration changed")
	}
}

// TestReloadSQLListeners: kept, changed on the same address (socket
// hand-off), moved, added and removed listeners, each checked on its socket.
func TestReloadSQLListeners(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *configs.Config)
		// per listener: "kept" (same object and port), "handed-off" (new
		// object, same port), "moved" (new object and port, old port
		// closed), "added", "removed" (old port closed)
		want map[string]string
	}{
		{"nothing changes", func(*testing.T, *configs.Config) {},
			map[string]string{"a": "kept", "b": "kept"}},
		{"upstream changes on the same address", func(_ *testing.T, c *configs.Config) {
			c.SQL[0].Upstream.Address = "127.0.0.1:10"
		}, map[string]string{"a": "handed-off", "b": "kept"}},
		{"the bound port written out is the same address", func(_ *testing.T, c *configs.Config) {
			c.SQL[1].Listen = "" // set below from the running listener
		}, map[string]string{"a": "kept", "b": "handed-off"}},
		{"moved to another port", func(t *testing.T, c *configs.Config) {
			c.SQL[0].Listen = freeAddr(t)
		}, map[string]string{"a": "moved", "b": "kept"}},
		{"added", func(_ *testing.T, c *configs.Config) {
			c.SQL = append(c.SQL, sqlCfg("c", "127.0.0.1:0", "127.0.0.1:9"))
		}, map[string]string{"a": "kept", "b": "kept", "c": "added"}},
		{"removed", func(_ *testing.T, c *configs.Config) {
			c.SQL = c.SQL[:1]
		}, map[string]string{"a": "kept", "b": "removed"}},
		{"all at once, reordered", func(_ *testing.T, c *configs.Config) {
			b := c.SQL[1]
			b.Upstream.Address = "127.0.0.1:10"
			c.SQL = []configs.SQLListener{sqlCfg("c", "127.0.0.1:0", "127.0.0.1:9"), b}
		}, map[string]string{"a": "removed", "b": "handed-off", "c": "added"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startHarness(t, baseConfig(t))
			before := h.snapshot()
			err := h.reload(func(c *configs.Config) {
				tt.mutate(t, c)
				for i := range c.SQL {
					if c.SQL[i].Listen == "" {
						c.SQL[i].Listen = before.addrs.SQL[c.SQL[i].Name]
						c.SQL[i].Upstream.Address = "127.0.0.1:11"
					}
				}
			})
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			after := h.snapshot()
			for name, want := range tt.want {
				old, now := before.listeners[name], after.listeners[name]
				switch want {
				case "kept":
					if now != old || after.addrs.SQL[name] != before.addrs.SQL[name] {
						t.Errorf("%s: want the same listener on %s, got %v on %s", name, before.addrs.SQL[name], now != old, after.addrs.SQL[name])
					}
				case "handed-off":
					if now == nil || now == old || after.addrs.SQL[name] != before.addrs.SQL[name] {
						t.Errorf("%s: want a new listener on the same address %s, got %s", name, before.addrs.SQL[name], after.addrs.SQL[name])
					}
				case "moved":
					if now == nil || after.addrs.SQL[name] == before.addrs.SQL[name] {
						t.Errorf("%s: want a new address, got %s", name, after.addrs.SQL[name])
					}
					if accepts(before.addrs.SQL[name]) {
						t.Errorf("%s: the old address %s still accepts", name, before.addrs.SQL[name])
					}
				case "added":
					if now == nil {
						t.Errorf("%s: not running", name)
					}
				case "removed":
					if now != nil {
						t.Errorf("%s: still running", name)
					}
					if accepts(before.addrs.SQL[name]) {
						t.Errorf("%s: the old address %s still accepts", name, before.addrs.SQL[name])
					}
				}
				if now != nil {
					if !accepts(after.addrs.SQL[name]) {
						t.Errorf("%s: %s does not accept", name, after.addrs.SQL[name])
					}
					if want := h.g.cfg.SQL[indexOf(h.g.cfg.SQL, name)]; !now.Config().Equal(want) {
						t.Errorf("%s: serves %+v, want %+v", name, now.Config(), want)
					}
				}
			}
			if len(after.listeners) != len(h.g.cfg.SQL) || len(after.addrs.SQLNames) != len(h.g.cfg.SQL) {
				t.Errorf("%d listeners running for %d configured", len(after.listeners), len(h.g.cfg.SQL))
			}
			for i, name := range after.addrs.SQLNames {
				if h.g.cfg.SQL[i].Name != name {
					t.Errorf("running listeners %q are not in sql[] order", after.addrs.SQLNames)
					break
				}
			}
			if len(h.logs.FilterMessage("config reloaded").All()) != 1 {
				t.Error(`no "config reloaded" line`)
			}
		})
	}
}

func indexOf(list []configs.SQLListener, name string) int {
	for i, l := range list {
		if l.Name == name {
			return i
		}
	}
	return -1
}

// TestReloadRefused: a reload refused at any stage leaves every front as it
// was, releases what earlier stages bound, and logs the problems.
func TestReloadRefused(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, c *configs.Config) (released []string)
		// loadErr makes Load fail instead (an unreadable file).
		loadErr     error
		wantProblem string
	}{
		{"unreadable file", nil, errors.New("open gateway.yaml: permission denied"), "permission denied"},
		{"invalid file", func(_ *testing.T, c *configs.Config) []string {
			c.SQL[0].Hostname = ""
			return nil
		}, nil, "sql[0].hostname"},
		{"a key that needs a restart", func(t *testing.T, c *configs.Config) []string {
			c.Storage = t.TempDir()
			return nil
		}, nil, "storage"},
		{"https address taken", func(t *testing.T, c *configs.Config) []string {
			c.HTTP.Listen = takenAddr(t)
			return nil
		}, nil, "address already in use"},
		{"added sql listener's address taken, after an https move", func(t *testing.T, c *configs.Config) []string {
			free := freeAddr(t)
			c.HTTP.Listen = free
			c.SQL = append(c.SQL, sqlCfg("c", takenAddr(t), "127.0.0.1:9"))
			return []string{free}
		}, nil, "sql[2]"},
		{"moved sql listener's address taken, after another was added", func(t *testing.T, c *configs.Config) []string {
			free := freeAddr(t)
			c.SQL[0].Listen = takenAddr(t)
			// c comes first in sql[], so it is bound before a fails.
			c.SQL = append([]configs.SQLListener{sqlCfg("c", free, "127.0.0.1:9")}, c.SQL...)
			return []string{free}
		}, nil, "sql[1]"},
		{"admin address taken, after sql and https moves", func(t *testing.T, c *configs.Config) []string {
			https, sql := freeAddr(t), freeAddr(t)
			c.HTTP.Listen = https
			c.SQL[1].Listen = sql
			c.Admin.Listen = takenAddr(t)
			return []string{https, sql}
		}, nil, "address already in use"},
		{"sql browser address taken, after an admin move", func(t *testing.T, c *configs.Config) []string {
			admin := freeAddr(t)
			c.Admin.Listen = admin
			c.SQL[0].Instance = "SQLEXPRESS"
			ln, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			c.SQLBrowser.Listen = ln.LocalAddr().String()
			return []string{admin}
		}, nil, "sql_browser.listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startHarness(t, baseConfig(t))
			before := h.snapshot()
			var released []string
			h.loadErr = tt.loadErr
			err := h.reload(func(c *configs.Config) {
				if tt.mutate != nil {
					released = tt.mutate(t, c)
				}
			})
			if err == nil {
				t.Fatal("Reload succeeded")
			}
			h.unchanged(before)
			for _, addr := range released {
				if !bindable(addr) {
					t.Errorf("%s, bound for the refused reload, was not released", addr)
				}
			}
			lines := h.logs.FilterMessage("config reload failed; keeping the running configuration").All()
			if len(lines) != 1 {
				t.Fatalf("%d failure lines", len(lines))
			}
			problems, _ := lines[0].ContextMap()["problems"].([]any)
			var all []string
			for _, p := range problems {
				all = append(all, p.(string))
			}
			if !strings.Contains(strings.Join(all, "\n"), tt.wantProblem) {
				t.Errorf("problems %q do not mention %q", all, tt.wantProblem)
			}
			// The gateway still reloads once the cause is gone.
			h.loadErr = nil
			if err := h.reload(func(c *configs.Config) { c.SQL[0].Upstream.Address = "127.0.0.1:10" }); err != nil {
				t.Fatalf("the next reload: %v", err)
			}
		})
	}
}

// TestReloadHTTPSAndAdmin: the HTTPS front is disabled, enabled again and
// moved; the operator endpoint moves and is disabled.
func TestReloadHTTPSAndAdmin(t *testing.T) {
	t.Parallel()
	h := startHarness(t, baseConfig(t))
	first := h.g.Addrs()

	if err := h.reload(func(c *configs.Config) { c.HTTP.Listen = ""; c.HTTP.Sites = nil }); err != nil {
		t.Fatalf("disabling https: %v", err)
	}
	if a := h.g.Addrs().HTTPS; a != nil {
		t.Errorf("https front still at %v", a)
	}
	eventuallyRefuses(t, first.HTTPS.String())

	addr := freeAddr(t)
	if err := h.reload(func(c *configs.Config) {
		c.HTTP.Listen = addr
		c.HTTP.Sites = []configs.Site{{Hosts: []string{"www.test"}, Upstreams: []string{"http://127.0.0.1:9"}}}
	}); err != nil {
		t.Fatalf("enabling https: %v", err)
	}
	if a := h.g.Addrs().HTTPS; a == nil || a.String() != addr || !accepts(addr) {
		t.Errorf("https front at %v, want %s accepting", a, addr)
	}

	moved := freeAddr(t)
	if err := h.reload(func(c *configs.Config) { c.HTTP.Listen = moved }); err != nil {
		t.Fatalf("moving https: %v", err)
	}
	if a := h.g.Addrs().HTTPS; a == nil || a.String() != moved || !accepts(moved) {
		t.Errorf("https front at %v, want %s", a, moved)
	}
	eventuallyRefuses(t, addr)

	adminAddr := freeAddr(t)
	if err := h.reload(func(c *configs.Config) { c.Admin.Listen = adminAddr }); err != nil {
		t.Fatalf("moving admin: %v", err)
	}
	if a := h.g.Addrs().Admin; a == nil || a.String() != adminAddr || !accepts(adminAddr) {
		t.Errorf("admin at %v, want %s", a, adminAddr)
	}
	eventuallyRefuses(t, first.Admin.String())
	if err := h.reload(func(c *configs.Config) { c.Admin.Listen = "" }); err != nil {
		t.Fatalf("disabling admin: %v", err)
	}
	if a := h.g.Addrs().Admin; a != nil {
		t.Errorf("admin still at %v", a)
	}
	eventuallyRefuses(t, adminAddr)
}

// eventuallyRefuses waits for a stopped part's socket to close.
func eventuallyRefuses(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for accepts(addr) {
		if time.Now().After(deadline) {
			t.Errorf("%s still accepts", addr)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDrain: from the drain on, readiness says so, reloads are ignored and
// every socket closes.
func TestDrain(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	g, err := Start(context.Background(), cfg, zap.New(core), Options{
		Load:     func() (*configs.Loaded, error) { return &configs.Loaded{Config: cfg}, nil },
		Notifier: nopNotifier{},
	})
	if err != nil {
		t.Fatal(err)
	}
	addrs := g.Addrs()
	if r := g.readiness(); r != nil && !strings.Contains(strings.Join(r, ","), "upstream") {
		t.Errorf("readiness before the drain = %q", r)
	}
	if err := g.Drain(); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if r := g.readiness(); len(r) != 1 || r[0] != "draining" {
		t.Errorf("readiness after the drain = %q, want [draining]", r)
	}
	if err := g.Reload(); err != nil {
		t.Errorf("Reload while draining: %v", err)
	}
	if len(logs.FilterMessage("config reload ignored: the gateway is draining").All()) != 1 {
		t.Error("the ignored reload was not logged")
	}
	for _, a := range append([]string{addrs.HTTPS.String(), addrs.Admin.String()}, addrs.SQL["a"], addrs.SQL["b"]) {
		if accepts(a) {
			t.Errorf("%s accepts after the drain", a)
		}
	}
	if len(logs.FilterMessage("gateway stopped").All()) != 1 {
		t.Error(`no "gateway stopped" line`)
	}
}

// TestReloadRuntime: runtime.gogc and runtime.memory_limit take effect at
// start and change on reload. Not parallel: the collector's settings are
// the process's.
func TestReloadRuntime(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	cfg := baseConfig(t)
	cfg.Runtime = configs.Runtime{GOGC: 80, MemoryLimit: "1GiB"}
	h := startHarness(t, cfg)
	if got := debug.SetGCPercent(-1); got != 80 {
		t.Errorf("GOGC after start = %d, want 80", got)
	}
	debug.SetGCPercent(80)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit after start = %d, want 1GiB", got)
	}
	if err := h.reload(func(c *configs.Config) { c.Runtime = configs.Runtime{GOGC: 50} }); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetGCPercent(-1); got != 50 {
		t.Errorf("GOGC after reload = %d, want 50", got)
	}
	debug.SetGCPercent(50)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit after reload = %d, want none", got)
	}
	if err := h.reload(func(c *configs.Config) { c.Runtime = configs.Runtime{GOGC: -1} }); err == nil {
		t.Error("gogc -1 without memory_limit was accepted")
	}
}

// TestRuntimeEnvironmentWins: GOGC and GOMEMLIMIT set in the environment
// stay in force while the keys keep their defaults.
func TestRuntimeEnvironmentWins(t *testing.T) {
	t.Setenv("GOGC", "60")
	t.Setenv("GOMEMLIMIT", "3GiB")
	defer debug.SetGCPercent(debug.SetGCPercent(60))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(3 << 30))
	fields := applyRuntime(configs.Runtime{GOGC: 100})
	if got := debug.SetGCPercent(60); got != 60 {
		t.Errorf("GOGC = %d, want the environment's 60", got)
	}
	if got := debug.SetMemoryLimit(3 << 30); got != 3<<30 {
		t.Errorf("memory limit = %d, want the environment's 3GiB", got)
	}
	if len(fields) != 2 {
		t.Errorf("fields %v do not name both environment settings", fields)
	}
	applyRuntime(configs.Runtime{GOGC: 70})
	if got := debug.SetGCPercent(60); got != 70 {
		t.Errorf("GOGC = %d, want the key's 70 over the environment", got)
	}
}
