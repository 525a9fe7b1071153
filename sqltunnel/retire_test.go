package sqltunnel

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestRetireHandsOverSocket replaces a listener as a reload does: the old
// one retires keeping its socket, the new one adopts it. A session opened
// before goes on on the old listener; new connections reach the new one on
// the same address; the old Serve returns once its session has ended.
func TestRetireHandsOverSocket(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	cfg := listenerConfig(srv.Addr(), caFile)
	old := startGateway(t, cfg)
	ctx := testCtx(t)

	db := old.open(t, nil)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}

	ln := old.l.Retire(true)
	if ln == nil {
		t.Fatal("Retire(true) returned no socket")
	}
	if again := old.l.Retire(true); again != nil {
		t.Error("a second Retire returned a socket")
	}
	next, err := New(cfg, old.pki.serverTLS, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Adopt(ln); err != nil {
		t.Fatal(err)
	}
	if got := next.Addr().String(); got != old.addr {
		t.Fatalf("adopted socket listens on %s, want %s", got, old.addr)
	}
	nextCtx, stopNext := context.WithCancel(context.Background())
	nextDone := make(chan error, 1)
	go func() { nextDone <- next.Serve(nextCtx) }()
	defer func() {
		stopNext()
		if err := <-nextDone; err != nil {
			t.Errorf("the next listener's Serve: %v", err)
		}
	}()

	// New connections go to the new listener, on the same address.
	fresh := old.open(t, nil)
	if err := selectOne(ctx, fresh); err != nil {
		t.Fatalf("a connection after the handover: %v", err)
	}
	if next.Sessions() != 1 {
		t.Errorf("new listener has %d sessions, want the fresh connection", next.Sessions())
	}
	fresh.Close()
	// The old session goes on.
	if err := conn.QueryRowContext(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("the session on the retired listener: %d, %v", n, err)
	}
	select {
	case err := <-old.done:
		t.Fatalf("the retired listener's Serve returned (%v) with a session open", err)
	default:
	}
	conn.Close()
	db.Close()
	if err := <-old.done; err != nil {
		t.Errorf("retired Serve: %v", err)
	}
	old.done <- nil // for the cleanup's stop
	if c := old.l.ClosedAtDrain(); c != 0 {
		t.Errorf("retired listener closed %d sessions; its session ended by itself", c)
	}
}

// TestRetireClosesSocket retires without handover: the address refuses
// connections at once.
func TestRetireClosesSocket(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	if ln := g.l.Retire(false); ln != nil {
		t.Fatal("Retire(false) returned the socket")
	}
	if err := <-g.done; err != nil {
		t.Errorf("Serve after Retire without sessions: %v", err)
	}
	g.done <- nil
	if c, err := net.DialTimeout("tcp", g.addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatal("the retired address still accepts connections")
	}
}

// TestMetrics counts a successful and a refused login through a listener
// with Metrics and checks every family.
func TestMetrics(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithMetrics(m))
	ctx := testCtx(t)
	db := g.open(t, nil)
	if err := selectOne(ctx, db); err != nil {
		t.Fatal(err)
	}
	db.Close()
	bad := openDSN(t, g.dsn(testUser, "wrong", nil), nil)
	if err := bad.PingContext(ctx); err == nil {
		t.Fatal("wrong password accepted")
	}
	bad.Close()
	if got := testutil.ToFloat64(m.logins.WithLabelValues("crm", string(outcomeOK))); got != 1 {
		t.Errorf("logins{ok} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.logins.WithLabelValues("crm", string(outcomeLoginFailed))); got != 1 {
		t.Errorf("logins{login_failed} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.loginsTLS.WithLabelValues("crm", "1.2", "1.2", string(outcomeOK))); got != 1 {
		t.Errorf("logins_tls{1.2,1.2,ok} = %v, want 1", got)
	}
	// A refusal is counted by its number; the upstream leg never existed.
	strict := listenerConfig(srv.Addr(), caFile)
	strict.Name, strict.ClientEncryption = "strict", configs.ClientEncryptionStrict
	gs := startGateway(t, strict, WithMetrics(m))
	if err := selectOne(ctx, gs.open(t, map[string]string{"encrypt": "true"})); err == nil {
		t.Fatal("a TDS 7.x login on a strict listener succeeded")
	}
	if got := testutil.ToFloat64(m.refusals.WithLabelValues("strict", "50901")); got != 1 {
		t.Errorf("refusals{strict,50901} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.loginsTLS.WithLabelValues("strict", "1.2", "none", string(outcomeRefused))); got != 1 {
		t.Errorf("logins_tls{strict,1.2,none,refused} = %v, want 1", got)
	}
	if err := gs.stop(); err != nil {
		t.Errorf("stopping the strict listener: %v", err)
	}
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("crm", "1.2", "ok")); got != 2 {
		t.Errorf("handshakes{1.2,ok} = %v, want 2", got)
	}
	for _, dir := range []string{"to_upstream", "to_client"} {
		if got := testutil.ToFloat64(m.bytes.WithLabelValues("crm", dir)); got < 100 {
			t.Errorf("bytes{%s} = %v", dir, got)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "gateway_tds_connections_active", "gateway_tds_upstream_up"); err != nil || n != 2 {
		t.Errorf("live gauges: %d series, %v", n, err)
	}
	if err := g.stop(); err != nil {
		t.Errorf("stopping the listener: %v", err)
	}
	// Every connection ended: each is counted once with its outcome. Without
	// encrypt=, go-mssqldb asks for login-only encryption (OFF); the gateway
	// answered REQ and the whole session was encrypted.
	want := `
# HELP gateway_tds_connections_total TDS client connections, counted when they end, by listener, dialect, client encryption as sent, negotiated encryption and outcome.
# TYPE gateway_tds_connections_total counter
gateway_tds_connections_total{client_encryption="OFF",dialect="tds7",listener="crm",negotiated="tls",outcome="login_failed"} 1
gateway_tds_connections_total{client_encryption="OFF",dialect="tds7",listener="crm",negotiated="tls",outcome="ok"} 1
gateway_tds_connections_total{client_encryption="ON",dialect="tds7",listener="strict",negotiated="tls",outcome="refused"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gateway_tds_connections_total"); err != nil {
		t.Error(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "gateway_tds_connections_active"); n != 0 {
		t.Errorf("a stopped listener still reports %d active series", n)
	}
}

func TestEncryptionLabel(t *testing.T) {
	for in, want := range map[string]string{"": "none", "ON": "ON", "OFF|CLIENT_CERT": "OFF|CLIENT_CERT", "Encryption(0x05)": "other", "absent": "absent"} {
		if got := encryptionLabel(in); got != want {
			t.Errorf("encryptionLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
