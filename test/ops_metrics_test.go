package test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// TestOpsMetrics scrapes /metrics before and after HTTP requests, a failed
// TLS handshake, a SQL session through go-mssqldb and a refused SQL login,
// and checks that the series an operator alerts on moved accordingly; it
// also checks /healthz, /readyz, /certs and the access log.
func TestOpsMetrics(t *testing.T) {
	t.Parallel()
	b := newOpsSQLBackend(t)
	cfg := opsConfig(t,
		opsSite{"app.test", namedBackend(t, "app")},
		opsSite{"query.test", namedBackend(t, "query")})
	cfg.HTTP.Sites[1].AccessLogQuery = true
	cfg.SQL = []gwSQL{opsSQL("ops-sql", b)}
	g := startOpsGateway(t, cfg)

	if code, body := g.adminGet(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	testkit.Eventually(t, 30*time.Second, "/readyz 200", func() error {
		if code, body := g.readyz(t); code != http.StatusOK {
			return fmt.Errorf("/readyz %d: %q", code, body)
		}
		return nil
	})
	before := g.scrape(t)
	if v := before.get("gateway_ready"); v != 1 {
		t.Errorf("gateway_ready = %v, want 1", v)
	}
	if v := before.get("gateway_certificate_expiry_seconds", "name", "app.test", "issuer", "internal"); v < 3600 {
		t.Errorf("gateway_certificate_expiry_seconds{name=app.test} = %v, want the leaf's remaining life", v)
	}
	if v := before.get("gateway_http_upstream_healthy", "site", "app.test", "upstream", cfg.HTTP.Sites[0].Upstreams[0]); v != 1 {
		t.Errorf("gateway_http_upstream_healthy{site=app.test} = %v, want 1", v)
	}
	if v := before.get("gateway_tds_upstream_up", "listener", "ops-sql"); v != 1 {
		t.Errorf("gateway_tds_upstream_up{listener=ops-sql} = %v, want 1", v)
	}

	// HTTP: requests with a query string, a cookie and credentials, none of
	// which may reach the access log unless the site opts in to the query.
	const requests = 5
	cookie, auth := "SESSION=ops-cookie-7f3a9c", "Basic b3BzOnNlY3JldC04ODE="
	registerSecret("ops-cookie-7f3a9c")
	registerSecret("b3BzOnNlY3JldC04ODE=")
	client := g.opsClient(t, "app.test", true)
	for i := range requests {
		req, _ := http.NewRequest(http.MethodGet, httpsURL("app.test", g.httpsAddr, fmt.Sprintf("/page/%d?patient=MRN-%d", i, i)), nil)
		req.Host = "app.test"
		req.Header.Set("Cookie", cookie)
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	g.mustFetch(t, g.opsClient(t, "query.test", false), "query.test", "/search?term=visible")
	// A client speaking plain HTTP to the HTTPS port: a failed handshake.
	if c, err := net.DialTimeout("tcp", g.httpsAddr, 5*time.Second); err == nil {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 512))
		c.Close()
	}

	// SQL: one session with a query, then a login the server refuses.
	ctx := sqlCtx(t)
	db := g.sqlDB(t, g.sqlAddrs["ops-sql"])
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("SQL session through the gateway: %v", err)
	}
	if err := sqlSelect(ctx, conn, 42); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bad := openMSSQL(t, mssqlDSNFor(g.sqlAddrs["ops-sql"], sqlUser, "wrong-password", verifiedParams("true", g.rootFile)))
	if err := bad.PingContext(ctx); err == nil {
		t.Fatal("a wrong password logged in")
	}

	after := g.waitMetric(t, "the SQL sessions and the failed handshake counted", func(m metrics) error {
		if n := m.get("gateway_tls_handshakes_total", "protocol", "https", "listener", "https", "version", "none", "result", "not_tls"); n < 1 {
			return fmt.Errorf("gateway_tls_handshakes_total{not_tls} = %v", n)
		}
		if n := m.sum("gateway_tds_connections_total", "listener", "ops-sql", "outcome", "ok"); n < 1 {
			return fmt.Errorf("gateway_tds_connections_total{outcome=ok} = %v", n)
		}
		if n := m.sum("gateway_tds_connections_total", "listener", "ops-sql", "outcome", "login_failed"); n < 1 {
			return fmt.Errorf("gateway_tds_connections_total{outcome=login_failed} = %v", n)
		}
		return nil
	})
	grew := func(name string, by float64, labels ...string) {
		t.Helper()
		if d := after.get(name, labels...) - before.get(name, labels...); d < by {
			t.Errorf("%s grew by %v, want at least %v", series(name, labels...), d, by)
		}
	}
	site := []string{"site", "app.test", "method", "GET", "code_class", "2xx"}
	grew("gateway_http_requests_total", requests, site...)
	grew("gateway_http_request_duration_seconds_count", requests, site...)
	grew("gateway_http_bytes_total", 1, "site", "app.test", "direction", "to_client")
	grew("gateway_http_connections_total", 2)
	grew("gateway_tls_handshakes_total", 2, "protocol", "https", "listener", "https", "version", "1.3", "result", "ok")
	grew("gateway_tls_handshakes_total", 1, "protocol", "https", "listener", "https", "version", "none", "result", "not_tls")
	grew("gateway_tds_logins_total", 1, "listener", "ops-sql", "outcome", "ok")
	grew("gateway_tds_logins_total", 1, "listener", "ops-sql", "outcome", "login_failed")
	grew("gateway_tds_bytes_total", 100, "listener", "ops-sql", "direction", "to_client")
	grew("gateway_tds_bytes_total", 100, "listener", "ops-sql", "direction", "to_upstream")
	grew("gateway_tls_handshakes_total", 2, "protocol", "tds", "listener", "ops-sql", "version", "1.2", "result", "ok")
	if n := after.get("gateway_tds_connections_total", "listener", "ops-sql", "dialect", "tds7",
		"client_encryption", "ON", "negotiated", "tls", "outcome", "ok"); n < 1 {
		t.Errorf("no TDS connection counted as tds7, client ON, negotiated tls, ok: %v", n)
	}
	if v := after.get("gateway_certificate_operations_total", "issuer", "internal", "operation", "obtain", "result", "success"); v < 1 {
		t.Errorf("gateway_certificate_operations_total{obtain,success} = %v, want the certificates obtained at start", v)
	}

	t.Run("access_log", func(t *testing.T) {
		var lines []logEntry
		g.waitLog(t, 10*time.Second, "the access log line of /search", func(_ string, e logEntry) bool {
			if e.str("logger") == "access" {
				lines = append(lines, e)
			}
			return e.str("logger") == "access" && e.str("path") == "/search"
		})
		if len(lines) < requests+1 {
			t.Fatalf("%d access log lines, want one per request (%d)", len(lines), requests+1)
		}
		for _, e := range lines {
			if e.str("level") != "info" || e.str("msg") != "request" {
				t.Errorf("access line level %q msg %q, want info request", e.str("level"), e.str("msg"))
			}
			for _, k := range []string{"site", "method", "path", "status", "bytes", "duration", "upstream", "tls_version"} {
				if _, ok := e[k]; !ok {
					t.Errorf("access line lacks %s: %v", k, e)
				}
			}
			switch e.str("site") {
			case "app.test":
				if _, ok := e["query"]; ok {
					t.Errorf("site without access_log_query logged the query: %v", e)
				}
			case "query.test":
				if e.str("query") != "term=visible" {
					t.Errorf("site with access_log_query: query %q, want term=visible", e.str("query"))
				}
			}
		}
		for _, line := range g.stderr.all() {
			for _, leak := range []string{"MRN-", "ops-cookie-7f3a9c", "b3BzOnNlY3JldC04ODE="} {
				if strings.Contains(line, leak) {
					t.Errorf("a log line carries %q: %s", leak, line)
				}
			}
		}
	})

	t.Run("certs", func(t *testing.T) {
		r := g.certs(t)
		names := map[string]bool{}
		for _, c := range r.Certificates {
			for _, n := range c.Names {
				names[n] = true
			}
			if c.Issuer != "internal" || c.NotAfter.Before(time.Now()) || c.SHA256 == "" {
				t.Errorf("certificate %v: issuer %q, not_after %s, sha256 %q", c.Names, c.Issuer, c.NotAfter, c.SHA256)
			}
			if c.LastRenewal == nil || c.LastRenewal.Operation != "obtain" || c.LastRenewal.Result != "success" {
				t.Errorf("certificate %v: last_renewal %+v, want the obtain at start", c.Names, c.LastRenewal)
			}
		}
		for _, want := range []string{"app.test", "query.test", sqlHost} {
			if !names[want] {
				t.Errorf("/certs does not list %s: %+v", want, r)
			}
		}
		if len(r.Missing) != 0 {
			t.Errorf("/certs: missing %v", r.Missing)
		}
	})

	t.Run("admin_rejects_other_methods_and_paths", func(t *testing.T) {
		resp, err := http.Post(g.adminURL+"/readyz", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /readyz: %s, want 405", resp.Status)
		}
		if code, _ := g.adminGet(t, "/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("GET /debug/pprof/: %d, want 404", code)
		}
	})
}
