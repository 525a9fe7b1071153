package sqltunnel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestRelayLargeResults streams results of many maximum-size packets
// (32767 bytes negotiated) and checks every byte.
func TestRelayLargeResults(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))

	for _, encrypt := range []string{"true", "strict"} {
		t.Run("encrypt="+encrypt, func(t *testing.T) {
			ctx := testCtx(t)
			db := g.open(t, map[string]string{"encrypt": encrypt, "packet size": "32767"})

			const binRows, binSize = 200, 30000 // PLP chunks over 32767-byte packets
			rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM tdstest.rows(%d, %d)", binRows, binSize))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ; rows.Next(); n++ {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					t.Fatal(err)
				}
				if len(b) != binSize {
					t.Fatalf("row %d: %d bytes, want %d", n, len(b), binSize)
				}
				for i, v := range b {
					if v != byte((n+i)%251) {
						t.Fatalf("row %d byte %d = %d, want %d", n, i, v, (n+i)%251)
					}
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != binRows {
				t.Fatalf("%d rows, want %d", n, binRows)
			}

			const textRows, textSize = 2000, 4000 // NVARCHAR(4000): many rows per packet
			rows, err = db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM tdstest.nrows(%d, %d)", textRows, textSize))
			if err != nil {
				t.Fatal(err)
			}
			n = 0
			for ; rows.Next(); n++ {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				if len(s) != textSize/2 {
					t.Fatalf("row %d: %d characters", n, len(s))
				}
				for i := 0; i < len(s); i++ {
					if s[i] != byte('a'+(n+i)%26) {
						t.Fatalf("row %d char %d = %q", n, i, s[i])
					}
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != textRows {
				t.Fatalf("%d rows, want %d", n, textRows)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "packet_size": 32767, "negotiated_packet_size": 32767})
		})
	}
	for _, r := range srv.Sessions() {
		if r.PacketSize != tds.MaxPacketSize {
			t.Errorf("upstream session %d: packet size %d", r.ID, r.PacketSize)
		}
	}
}

// TestRelayAttention cancels a query while the server is busy and while a
// result is streaming: the attention goes through, the server acknowledges
// it, and the same connection runs the next query. (Cancel, not a deadline:
// go-mssqldb drops a connection whose query hit a context deadline.)
func TestRelayAttention(t *testing.T) {
	upLog, upLogs := newLogSink(t)
	srv, caFile := upstreamDouble(t, tdstest.Config{Logger: upLog.Named("tdstest")})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	ctx := testCtx(t)
	db := g.open(t, map[string]string{"encrypt": "true"})
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	t.Run("during WAITFOR", func(t *testing.T) {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := conn.ExecContext(qctx, "WAITFOR DELAY '00:01:00'")
			done <- err
		}()
		upLogs.waitMsg(t, "sql batch", map[string]any{"text": "WAITFOR DELAY '00:01:00'"})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("WAITFOR returned %v, want context.Canceled", err)
		}
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("SELECT 1 after the attention: %d, %v", n, err)
		}
	})

	t.Run("during a streaming result", func(t *testing.T) {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rows, err := conn.QueryContext(qctx, "SELECT * FROM tdstest.rows(1000000, 8000)") // 8 GB if not canceled
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10 && rows.Next(); i++ {
		}
		cancel()
		for rows.Next() {
		}
		_ = rows.Close()
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("SELECT 1 after the attention: %d, %v", n, err)
		}
	})

	recs := srv.Sessions()
	if len(recs) != 1 {
		t.Fatalf("%d upstream sessions, want 1", len(recs))
	}
	// Two cancels, each relayed: go-mssqldb sometimes sends a second
	// attention for one cancel (tdstest answers each), so 2 is a minimum.
	if recs[0].Attentions < 2 {
		t.Errorf("upstream received %d attentions, want at least 2 (one per cancel)", recs[0].Attentions)
	}
}

// TestRelayOversizedPacket: a packet over the negotiated size ends the
// session, logged as malformed input from that side.
func TestRelayOversizedPacket(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{Faults: tdstest.Faults{OversizedPacket: true}})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err == nil {
		t.Fatal("query succeeded over an oversized packet")
	}
	e := g.logs.waitMsg(t, "sql session closed on malformed input from the upstream", nil)
	if reason, _ := e.ContextMap()["reason"].(string); !strings.Contains(reason, "larger than maximum packet size") {
		t.Errorf("reason %q", reason)
	}
}

// TestLoginFailed: the upstream's refusal is relayed as is and audited with
// its number; no password is logged.
func TestLoginFailed(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	const wrong = "Wr0ng-passw0rd-xyz"
	err := selectOne(testCtx(t), openDSN(t, g.dsn(testUser, wrong, map[string]string{"encrypt": "true"}), nil))
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if me := sqlError(t, err); me.Number != 18456 {
		t.Fatalf("error %d %q, want 18456", me.Number, me.Message)
	}
	g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "login_failed", "error_number": 18456, "error_class": 14, "user": testUser})
	g.logs.assertNoSecret(t, wrong)
}

// TestRoutingRefused: a routing ENVCHANGE in the login reply would send the
// client around the gateway; the client gets an ERROR instead.
func TestRoutingRefused(t *testing.T) {
	for _, enhanced := range []bool{false, true} {
		t.Run(fmt.Sprintf("enhanced=%v", enhanced), func(t *testing.T) {
			srv, caFile := upstreamDouble(t, tdstest.Config{Faults: tdstest.Faults{
				Routing: &tds.Routing{Enhanced: enhanced, Server: "replica.internal", Port: 11433, Database: "crm"},
			}})
			g := startGateway(t, listenerConfig(srv.Addr(), caFile))
			err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
			if err == nil {
				t.Fatal("routed login succeeded")
			}
			me := sqlError(t, err)
			if me.Number != ErrorNumberRoutingRefused || !strings.Contains(me.Message, "routing to replica.internal:11433") {
				t.Fatalf("error %d %q", me.Number, me.Message)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "refused", "error_number": ErrorNumberRoutingRefused})
		})
	}
}

// TestAuditLine checks the safe fields of the audit line and that the
// password appears nowhere.
func TestAuditLine(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "strict"})); err != nil {
		t.Fatal(err)
	}
	e := g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok"})
	f := e.ContextMap()
	want := map[string]any{
		"listener": "crm", "dialect": "tds8", "user": testUser, "database": testDB, "app": testAppStr,
		"library": "go-mssqldb", "auth": "sql", "upstream": srv.Addr(), "upstream_verify": "ca",
		"upstream_tls_version": "TLS 1.2", "client_tls_version": "TLS 1.3", "conn_id": uint64(1),
	}
	for k, v := range want {
		if fmt.Sprint(f[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, f[k], v)
		}
	}
	for _, k := range []string{"remote", "client_host", "tds_version", "packet_size", "client_tls_cipher", "upstream_tls_cipher", "server_tds_version", "login_duration"} {
		if _, ok := f[k]; !ok {
			t.Errorf("field %s missing", k)
		}
	}
	n := 0
	for _, e := range g.logs.obs.All() {
		if e.Message == "sql login" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d audit lines for one login", n)
	}
	g.logs.assertNoSecret(t, testPass)
}

// TestDrain: on shutdown, sessions still open after the drain timeout are
// closed and counted, and Serve returns nil.
func TestDrain(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithDrainTimeout(100*time.Millisecond))
	ctx := testCtx(t)
	db := g.open(t, map[string]string{"encrypt": "true"})
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	g.logs.waitMsg(t, "sql listener stopped; closed sessions still open after the drain timeout", map[string]any{"closed_sessions": 1})
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err == nil {
		t.Fatal("session still works after the drain")
	}
	if g.l.Addr() == nil {
		t.Fatal("Addr is nil after Serve")
	}
	// The listener is closed: serving it again fails rather than hanging.
	if err := g.l.Serve(ctx); err == nil {
		t.Fatal("a second Serve returned nil")
	}
}
