package test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// TestOpsDrain holds an HTTP request in the backend and runs a slow SQL
// statement on an open TDS session, then sends SIGTERM: /readyz answers 503
// "draining" at once, both listeners stop accepting, the HTTP request and
// the TDS session (its running statement and one more) complete, and the
// process exits 0 with one summary line saying nothing was cut.
func TestOpsDrain(t *testing.T) {
	t.Parallel()
	hb := newHoldBackend(t)
	b := newOpsSQLBackend(t)
	cfg := opsConfig(t, opsSite{"app.test", hb.url})
	cfg.DrainTimeout = "60s"
	cfg.SQL = []gwSQL{opsSQL("drain-sql", b)}
	g := startOpsGateway(t, cfg)
	sqlAddr := g.sqlAddrs["drain-sql"]

	// The HTTP request in flight.
	held := make(chan heldResult, 1)
	client := g.opsClient(t, "app.test", false)
	go func() {
		resp, err := client.Get(httpsURL("app.test", g.httpsAddr, "/hold"))
		if err != nil {
			held <- heldResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		held <- heldResult{status: resp.StatusCode, body: body, err: err}
	}()
	select {
	case <-hb.entered:
	case r := <-held:
		t.Fatalf("the request ended before reaching the backend: %v", r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the backend")
	}

	// The TDS session, with a statement running across the SIGTERM.
	ctx := sqlCtx(t)
	db := g.sqlDB(t, sqlAddr)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("SQL session: %v", err)
	}
	if err := sqlSelect(ctx, conn, 1); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := conn.ExecContext(ctx, "WAITFOR DELAY '00:00:02'")
		slow <- err
	}()

	mark := g.mark()
	g.signal(t, syscall.SIGTERM)
	draining := g.waitLogAfter(t, mark, 30*time.Second, `"draining"`, msgIs("draining"))
	if n, _ := draining["requests_in_flight"].(float64); n != 1 {
		t.Errorf("draining: requests_in_flight %v, want 1", draining["requests_in_flight"])
	}
	if n, _ := draining["sql_sessions"].(float64); n != 1 {
		t.Errorf("draining: sql_sessions %v, want 1", draining["sql_sessions"])
	}
	code, body := g.readyz(t)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 draining", code, body)
	}
	if v := g.scrape(t).get("gateway_ready"); v != 0 {
		t.Errorf("gateway_ready while draining = %v, want 0", v)
	}
	testkit.Eventually(t, 30*time.Second, "both listeners refuse new connections", func() error {
		for _, addr := range []string{g.httpsAddr, sqlAddr} {
			if err := refused(addr); err != nil {
				return err
			}
		}
		return nil
	})
	if g.exited() {
		t.Fatalf("the gateway exited (%v) with a request and a session open", g.state)
	}

	// The TDS session goes on: the running statement, then one more.
	select {
	case err := <-slow:
		if err != nil {
			t.Fatalf("the statement running across SIGTERM failed: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the statement running across SIGTERM did not finish")
	}
	if err := sqlSelect(ctx, conn, 2); err != nil {
		t.Fatalf("the open TDS session broke during the drain: %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The HTTP request completes once the backend answers.
	hb.release()
	select {
	case r := <-held:
		if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, hb.payload) {
			t.Fatalf("the request in flight: status %d, %d of %d bytes, error %v", r.status, len(r.body), len(hb.payload), r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request in flight did not complete after release")
	}

	stopped := g.waitLogAfter(t, mark, 60*time.Second, `"gateway stopped"`, func(_ string, e logEntry) bool {
		return strings.HasPrefix(e.str("msg"), "gateway stopped")
	})
	if code := g.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after the drain, want 0", code)
	}
	for key, want := range map[string]float64{
		"requests_in_flight_at_start": 1, "sql_sessions_at_start": 1, "requests_cut": 0, "sql_sessions_closed": 0,
	} {
		if got, _ := stopped[key].(float64); got != want {
			t.Errorf("gateway stopped: %s = %v, want %v (line %v)", key, stopped[key], want, stopped)
		}
	}
	if stopped.str("level") != "info" {
		t.Errorf("gateway stopped at level %q after a complete drain, want info", stopped.str("level"))
	}
	if n := strings.Count(strings.Join(g.stderr.all(), "\n"), `"msg":"gateway stopped`); n != 1 {
		t.Errorf("%d summary lines, want 1", n)
	}
}

// TestOpsDrainTimeoutCuts checks the other side: what is still open when
// drain_timeout runs out is closed and counted in the summary line.
func TestOpsDrainTimeoutCuts(t *testing.T) {
	t.Parallel()
	hb := newHoldBackend(t)
	b := newOpsSQLBackend(t)
	cfg := opsConfig(t, opsSite{"app.test", hb.url})
	cfg.DrainTimeout = "1s"
	cfg.SQL = []gwSQL{opsSQL("cut-sql", b)}
	g := startOpsGateway(t, cfg)

	client := g.opsClient(t, "app.test", false)
	go func() {
		resp, err := client.Get(httpsURL("app.test", g.httpsAddr, "/hold"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-hb.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	ctx := sqlCtx(t)
	conn, err := g.sqlDB(t, g.sqlAddrs["cut-sql"]).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := sqlSelect(ctx, conn, 1); err != nil {
		t.Fatal(err)
	}

	mark := g.mark()
	g.signal(t, syscall.SIGTERM)
	stopped := g.waitLogAfter(t, mark, 60*time.Second, `"gateway stopped"`, func(_ string, e logEntry) bool {
		return strings.HasPrefix(e.str("msg"), "gateway stopped")
	})
	if code := g.waitExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if stopped.str("level") != "warn" {
		t.Errorf("summary at level %q, want warn when the drain cut connections", stopped.str("level"))
	}
	for key, want := range map[string]float64{"requests_cut": 1, "sql_sessions_closed": 1} {
		if got, _ := stopped[key].(float64); got != want {
			t.Errorf("gateway stopped: %s = %v, want %v", key, stopped[key], want)
		}
	}
}
