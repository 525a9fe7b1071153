package test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// loadLoop sends GET requests for host in a loop through two clients, one
// reusing its connections and one opening a new connection (and TLS
// handshake) per request, until stop is called or max requests were sent.
// It counts every answer that is not a 200 from want's backend.
type loadLoop struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	failures     []string
	stop         func()
	done         sync.WaitGroup
}

func startLoad(t *testing.T, g *opsGateway, host, wantPrefix string, max int64) *loadLoop {
	t.Helper()
	l := &loadLoop{}
	stopped := make(chan struct{})
	var once sync.Once
	l.stop = func() { once.Do(func() { close(stopped) }); l.done.Wait() }
	for _, keepAlive := range []bool{true, false} {
		client := g.opsClient(t, host, keepAlive)
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for i := int64(0); i < max; i++ {
				select {
				case <-stopped:
					return
				default:
				}
				code, body, err := g.fetch(client, host, fmt.Sprintf("/load/%d", i))
				l.sent.Add(1)
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, wantPrefix) {
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, fmt.Sprintf("keep-alive %v: status %d, error %v, body %q", keepAlive, code, err, body))
					l.mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

// waitSent waits until n more requests than before have been sent.
func (l *loadLoop) waitSent(t *testing.T, n int64) {
	t.Helper()
	target := l.sent.Load() + n
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("%d requests sent", n), func() error {
		if got := l.sent.Load(); got < target {
			return fmt.Errorf("%d of %d sent", got, target)
		}
		return nil
	})
}

// TestOpsReload reloads under a bounded request loop while a site and a SQL
// listener are added, another of each removed, and a SQL listener changed
// on the same address: no request of the loop fails; the new site answers
// and the removed one falls to the default (first) site; the new SQL
// listener accepts and the removed one refuses new connections, while a TDS
// session opened on it before the reload keeps working until it is closed;
// the changed listener keeps its port.
func TestOpsReload(t *testing.T) {
	t.Parallel()
	b := newOpsSQLBackend(t)
	keep, gone, added := namedBackend(t, "keep"), namedBackend(t, "gone"), namedBackend(t, "added")
	before := opsConfig(t, opsSite{"keep.test", keep}, opsSite{"gone.test", gone})
	before.SQL = []gwSQL{opsSQL("sql-keep", b), opsSQL("sql-gone", b), opsSQL("sql-change", b)}
	g := startOpsGateway(t, before)
	goneAddr, changeAddr := g.sqlAddrs["sql-gone"], g.sqlAddrs["sql-change"]

	// A TDS session on the listener the reload removes, opened before it.
	ctx := sqlCtx(t)
	oldDB := g.sqlDB(t, goneAddr)
	oldConn, err := oldDB.Conn(ctx)
	if err != nil {
		t.Fatalf("SQL session on sql-gone: %v", err)
	}
	defer oldConn.Close()
	if err := sqlSelect(ctx, oldConn, 1); err != nil {
		t.Fatal(err)
	}
	if body := g.mustFetch(t, g.opsClient(t, "gone.test", false), "gone.test", "/"); !strings.HasPrefix(body, "gone ") {
		t.Fatalf("gone.test before the reload answered %q", body)
	}

	load := startLoad(t, g, "keep.test", "keep ", 5000)
	load.waitSent(t, 50)

	after := opsConfig(t, opsSite{"keep.test", keep}, opsSite{"added.test", added})
	after.Admin = before.Admin
	after.Storage = before.Storage
	// sql-change keeps its listen address (the socket is handed over to
	// the replacement) but changes its policy.
	changed := opsSQL("sql-change", b)
	changed.ClientEncryption = "allow_plaintext_loopback"
	after.SQL = []gwSQL{opsSQL("sql-keep", b), opsSQL("sql-added", b), changed}
	res := g.reload(t, after)
	if res.str("msg") != "config reloaded" {
		t.Fatalf("reload failed: %v", res)
	}
	for key, want := range map[string][]string{
		"sites_added":   {"added.test"},
		"sites_removed": {"gone.test"},
		"sql_added":     {"sql-added"},
		"sql_removed":   {"sql-gone"},
		"sql_changed":   {"sql-change"},
	} {
		if got := strSlice(res[key]); !slices.Equal(got, want) {
			t.Errorf("config reloaded: %s = %v, want %v", key, got, want)
		}
	}
	addrs := stringMap(res["sql_listeners"])
	load.waitSent(t, 100)
	load.stop()
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across the reload; first: %v", n, load.sent.Load(), load.failures[:min(3, len(load.failures))])
	}
	t.Logf("%d requests sent across the reload, none failed", load.sent.Load())

	t.Run("sites", func(t *testing.T) {
		if body := g.mustFetch(t, g.opsClient(t, "added.test", false), "added.test", "/x"); body != "added /x" {
			t.Errorf("added.test answered %q, want its backend", body)
		}
		// A name no site lists goes to the first site, as any unknown name.
		if body := g.mustFetch(t, g.opsClient(t, "keep.test", false), "gone.test", "/y"); body != "keep /y" {
			t.Errorf("gone.test after the reload answered %q, want the default site keep.test", body)
		}
	})

	t.Run("sql", func(t *testing.T) {
		if addrs["sql-keep"] != g.sqlAddrs["sql-keep"] {
			t.Errorf("sql-keep moved from %s to %s", g.sqlAddrs["sql-keep"], addrs["sql-keep"])
		}
		if addrs["sql-change"] != changeAddr {
			t.Errorf("sql-change moved from %s to %s; the same address must be kept", changeAddr, addrs["sql-change"])
		}
		for _, name := range []string{"sql-added", "sql-change", "sql-keep"} {
			db := g.sqlDB(t, addrs[name])
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Errorf("%s at %s: %v", name, addrs[name], err)
				continue
			}
			if err := sqlSelect(ctx, conn, 7); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			conn.Close()
		}
		testkit.Eventually(t, 30*time.Second, "the removed listener refuses connections", func() error { return refused(goneAddr) })
		// The session opened before the reload goes on, on the old listener.
		for i := range 3 {
			if err := sqlSelect(ctx, oldConn, int64(100+i)); err != nil {
				t.Fatalf("the session on the removed listener broke after the reload: %v", err)
			}
		}
		mark := g.mark()
		if err := oldConn.Close(); err != nil {
			t.Fatal(err)
		}
		if err := oldDB.Close(); err != nil {
			t.Fatal(err)
		}
		g.waitLogAfter(t, mark, 30*time.Second, "the retired sql-gone listener stopping once its session ended",
			func(_ string, e logEntry) bool {
				return e.str("msg") == "sql listener stopped" && e.str("listener") == "sql-gone"
			})
	})

	t.Run("metrics", func(t *testing.T) {
		m := g.scrape(t)
		if v := m.get("gateway_config_reloads_total", "result", "success"); v != 1 {
			t.Errorf("gateway_config_reloads_total{success} = %v, want 1", v)
		}
		if m.has("gateway_http_upstream_healthy", "site", "gone.test", "upstream", gone) {
			t.Error("the removed site still has upstream series")
		}
		if v := m.get("gateway_http_upstream_healthy", "site", "added.test", "upstream", added); v != 1 {
			t.Errorf("gateway_http_upstream_healthy{site=added.test} = %v, want 1", v)
		}
	})
}

func strSlice(v any) []string {
	var out []string
	if list, ok := v.([]any); ok {
		for _, x := range list {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestOpsReloadRefused sends SIGHUP with an invalid configuration and with
// one that changes a key that needs a restart: each is refused, every
// problem is logged naming its key, and the running configuration keeps
// serving. It also checks what systemd hears over $NOTIFY_SOCKET.
func TestOpsReloadRefused(t *testing.T) {
	t.Parallel()
	notify, next := fakeNotifySocket(t)
	app := namedBackend(t, "app")
	cfg := opsConfig(t, opsSite{"app.test", app})
	g := startOpsGateway(t, cfg, "NOTIFY_SOCKET="+notify)
	if msg := next(); !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notification %q, want READY=1", msg)
	}
	client := g.opsClient(t, "app.test", true)

	invalid := opsConfig(t, opsSite{"app.test", "ftp://not-http"})
	invalid.Admin, invalid.Storage = cfg.Admin, cfg.Storage
	invalid.SQL = []gwSQL{{Name: "broken", Listen: "127.0.0.1:0", Hostname: sqlHost, ClientEncryption: "sometimes",
		Upstream: gwSQLUpstream{Address: "no-port", Encryption: "required"}}}
	restart := opsConfig(t, opsSite{"app.test", app})
	restart.Admin, restart.Storage = cfg.Admin, cfg.Storage
	restart.TLS.Issuer = "none"
	restart.TLS.MinVersion = "1.3"

	cases := []struct {
		name string
		cfg  *gwSQLConfig
		keys []string // every one must be named by a problem
	}{
		{"invalid", invalid, []string{"http.sites[0].upstreams[0]", "sql[0].client_encryption", "sql[0].upstream.address"}},
		{"needs_restart", restart, []string{"tls.issuer", "tls.min_version"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := g.reload(t, tc.cfg)
			if res.str("msg") == "config reloaded" {
				t.Fatalf("the reload was applied: %v", res)
			}
			if res.str("level") != "error" {
				t.Errorf("refusal logged at %q, want error", res.str("level"))
			}
			problems := strSlice(res["problems"])
			for _, key := range tc.keys {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, key+":") }) {
					t.Errorf("no problem names %s: %q", key, problems)
				}
			}
			if body := g.mustFetch(t, client, "app.test", "/still"); body != "app /still" {
				t.Errorf("after the refused reload app.test answered %q", body)
			}
			if code, body := g.readyz(t); code != http.StatusOK {
				t.Errorf("/readyz after a refused reload: %d %q", code, body)
			}
			m := g.scrape(t)
			if v := m.get("gateway_config_reloads_total", "result", "failure"); v != float64(i+1) {
				t.Errorf("gateway_config_reloads_total{failure} = %v, want %d", v, i+1)
			}
			if v := m.get("gateway_config_last_reload_successful"); v != 0 {
				t.Errorf("gateway_config_last_reload_successful = %v, want 0", v)
			}
			if msg := next(); !strings.Contains(msg, "RELOADING=1") {
				t.Errorf("notification %q, want RELOADING=1", msg)
			}
			if msg := next(); !strings.Contains(msg, "READY=1") {
				t.Errorf("notification %q, want READY=1 after the reload", msg)
			}
		})
	}

	t.Run("valid_again", func(t *testing.T) {
		res := g.reload(t, cfg)
		if res.str("msg") != "config reloaded" {
			t.Fatalf("the original configuration was refused: %v", res)
		}
		if v := g.scrape(t).get("gateway_config_last_reload_successful"); v != 1 {
			t.Errorf("gateway_config_last_reload_successful = %v, want 1", v)
		}
		_, _ = next(), next() // RELOADING, READY
	})

	g.stop(t)
	if msg := next(); !strings.Contains(msg, "STOPPING=1") {
		t.Errorf("notification at SIGTERM %q, want STOPPING=1", msg)
	}
}

// TestOpsReloadFrontAndAdmin enables the HTTPS front of a SQL-only gateway by
// a reload, moves the admin endpoint, then disables the front again.
func TestOpsReloadFrontAndAdmin(t *testing.T) {
	t.Parallel()
	b := newOpsSQLBackend(t)
	cfg := opsConfig(t)
	cfg.HTTP = gwHTTP{}
	cfg.SQL = []gwSQL{opsSQL("only-sql", b)}
	g := startOpsGateway(t, cfg)
	if g.httpsAddr != "" {
		t.Fatalf("a SQL-only gateway reported https_addr %q", g.httpsAddr)
	}

	withFront := opsConfig(t, opsSite{"late.test", namedBackend(t, "late")})
	withFront.Storage = cfg.Storage
	withFront.Admin = gwAdmin{Listen: "localhost:0"} // another text: a new address
	withFront.SQL = cfg.SQL
	res := g.reload(t, withFront)
	if res.str("msg") != "config reloaded" || res.str("https") != "enabled" {
		t.Fatalf("reload enabling the front: %v", res)
	}
	oldAdmin := strings.TrimPrefix(g.adminURL, "http://")
	g.httpsAddr = res.str("https_addr")
	g.adminURL = "http://" + res.str("admin_addr")
	if body := g.mustFetch(t, g.opsClient(t, "late.test", false), "late.test", "/p"); body != "late /p" {
		t.Errorf("the site added with the front answered %q", body)
	}
	if code, _ := g.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz on the moved admin endpoint: %d", code)
	}
	testkit.Eventually(t, 30*time.Second, "the old admin address refusing connections", func() error { return refused(oldAdmin) })

	res = g.reload(t, func() *gwSQLConfig {
		c := *withFront
		c.HTTP = gwHTTP{}
		return &c
	}())
	if res.str("msg") != "config reloaded" || res.str("https") != "disabled" {
		t.Fatalf("reload disabling the front: %v", res)
	}
	testkit.Eventually(t, 30*time.Second, "the HTTPS listener refusing connections", func() error { return refused(g.httpsAddr) })
	g.stop(t)
}
