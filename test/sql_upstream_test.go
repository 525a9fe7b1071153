package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestSQLUpstreamFailures: when the upstream cannot be used safely, the
// client (go-mssqldb, which verifies the gateway) gets a TDS ERROR naming
// the upstream with the documented number, the audit line says so, and the
// double never receives the login.
func TestSQLUpstreamFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		server  tdstest.Config
		adjust  func(t *testing.T, up *gwSQLUpstream)
		number  int32
		message string // besides the upstream's address
	}{
		{
			name:   "untrusted_certificate",
			server: tdstest.Config{Encryption: tdstest.EncryptForced},
			adjust: func(t *testing.T, up *gwSQLUpstream) {
				_, other, err := tdstest.NewCertificate(sqlHost)
				if err != nil {
					t.Fatal(err)
				}
				up.CAFile = writeFile(t, t.TempDir(), "other-ca.pem", other)
			},
			number: sqltunnel.ErrorNumberUpstreamCertificate,
		},
		{
			// A pin alone checks only the leaf: here the pin of another
			// certificate.
			name:   "pin_mismatch",
			server: tdstest.Config{Encryption: tdstest.EncryptForced},
			adjust: func(t *testing.T, up *gwSQLUpstream) {
				cert, _, err := tdstest.NewCertificate(sqlHost)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(cert.Certificate[0])
				up.CAFile, up.PinSHA256 = "", hex.EncodeToString(sum[:])
			},
			number: sqltunnel.ErrorNumberUpstreamCertificate,
		},
		{
			name:    "server_not_supported",
			server:  tdstest.Config{Encryption: tdstest.EncryptNotSupported},
			number:  sqltunnel.ErrorNumberUpstreamNoEncryption,
			message: "NOT_SUP",
		},
		{
			// A server answering OFF to the gateway's ON would give
			// login-only encryption.
			name:    "server_answers_off",
			server:  tdstest.Config{Encryption: tdstest.EncryptForced, Faults: tdstest.Faults{AnswerEncryption: new(tds.EncryptOff)}},
			number:  sqltunnel.ErrorNumberUpstreamNoEncryption,
			message: "login-only",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newSQLBackend(t, tc.server)
			cfg := newSQLConfig(t, "required", b.srv.Addr(), b.caFile)
			if tc.adjust != nil {
				tc.adjust(t, &cfg.SQL[0].Upstream)
			}
			g := startSQLGateway(t, cfg)
			err := mssqlQueries(sqlCtx(t), openMSSQL(t, mssqlDSN(g.addr, verifiedParams("true", g.rootFile))))
			if err == nil {
				t.Fatal("login succeeded through an unusable upstream")
			}
			me := mssqlError(t, err)
			t.Logf("client error (expected): %d class %d server %q: %s", me.Number, me.Class, me.ServerName, me.Message)
			if me.Number != tc.number || me.Class != 20 || me.ServerName != "gateway" {
				t.Errorf("ERROR %d class %d from %q, want %d class 20 from gateway", me.Number, me.Class, me.ServerName, tc.number)
			}
			if !strings.Contains(me.Message, b.srv.Addr()) || !strings.Contains(me.Message, tc.message) {
				t.Errorf("message %q does not name the upstream %s (and %q)", me.Message, b.srv.Addr(), tc.message)
			}
			g.loginLine(t, map[string]string{
				"outcome": "upstream_error", "error_number": fmt.Sprint(tc.number),
				"client_encryption": "ON", "client_tls_version": "TLS 1.2",
			})
			b.noUpstreamLogin(t)
		})
	}
}

// TestSQLCancelStreaming cancels a go-mssqldb query while a large rowset
// streams through the gateway: the attention crosses the relay, the double
// stops, and the same connection runs the next query.
func TestSQLCancelStreaming(t *testing.T) {
	t.Parallel()
	env := newSQLEnv(t, "required")
	ctx := sqlCtx(t)
	db := openMSSQL(t, mssqlDSN(env.gw.addr, verifiedParams("true", env.gw.rootFile)))
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// 10^9 rows of 1000 bytes: a terabyte the double would stream for hours.
	const query = "SELECT * FROM tdstest.rows(1000000000, 1000)"
	qctx, cancel := context.WithCancel(ctx)
	rows, err := conn.QueryContext(qctx, query)
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for rows.Next() {
		var v []byte
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		if want := binaryRow(int64(read), 1000); !bytes.Equal(v, want) {
			t.Fatalf("row %d differs", read)
		}
		if read++; read == 2000 {
			cancel()
		}
	}
	err = rows.Err()
	_ = rows.Close()
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("rows after cancel: %v (read %d), want context.Canceled", err, read)
	}
	t.Logf("read %d rows before the cancel took effect", read)

	var n int64
	if err := conn.QueryRowContext(ctx, sqlMarkerQuery).Scan(&n); err != nil || n != sqlMarkerValue {
		t.Fatalf("the connection is not usable after the cancel: %v (%d)", err, n)
	}
	recs := env.backend.srv.Sessions()
	if len(recs) != 1 {
		t.Fatalf("%d upstream sessions, want 1 (the same connection)", len(recs))
	}
	rec := recs[0]
	if rec.Attentions != 1 {
		t.Errorf("the double received %d attentions, want 1", rec.Attentions)
	}
	var canceled, after bool
	for _, r := range rec.Requests {
		if r.Text == query && r.Canceled {
			canceled = true
		}
		if canceled && r.Text == sqlMarkerQuery && !r.Canceled {
			after = true
		}
	}
	if !canceled || !after {
		t.Errorf("requests %+v: want the rowset canceled, then the marker query", rec.Requests)
	}
	_ = conn.Close()
	_ = db.Close()
	env.backend.upstreamFull(t)
}

// TestSQLPacketSize32767: a session with the largest packet size returns
// large rowsets intact through the gateway (packets over one TLS record
// each way).
func TestSQLPacketSize32767(t *testing.T) {
	t.Parallel()
	env := newSQLEnv(t, "required")
	ctx := sqlCtx(t)
	params := verifiedParams("true", env.gw.rootFile)
	params["packet size"] = "32767"
	db := openMSSQL(t, mssqlDSN(env.gw.addr, params))
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		rows, size int
	}{
		{3000, 8000}, // VARBINARY(8000): rows fill packets
		{40, 200000}, // VARBINARY(MAX): PLP chunks across many packets
	} {
		query := fmt.Sprintf("SELECT * FROM tdstest.rows(%d, %d)", q.rows, q.size)
		rows, err := conn.QueryContext(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		n := 0
		for rows.Next() {
			var v []byte
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v, binaryRow(int64(n), q.size)) {
				t.Fatalf("%s: row %d differs (%d bytes)", query, n, len(v))
			}
			n++
		}
		if err := rows.Err(); err != nil || n != q.rows {
			t.Fatalf("%s: %d rows, error %v", query, n, err)
		}
	}
	_ = conn.Close()
	_ = db.Close()
	env.gw.loginLine(t, map[string]string{"outcome": "ok", "packet_size": "32767", "negotiated_packet_size": "32767"})
	if rec := env.backend.upstreamFull(t); rec.RequestedPacketSize != 32767 || rec.PacketSize != 32767 {
		t.Errorf("upstream packet size requested %d granted %d, want 32767", rec.RequestedPacketSize, rec.PacketSize)
	}
}

// binaryRow is row r of tdstest.rows(_, m): bytes (r+i) mod 251.
func binaryRow(r int64, m int) []byte {
	b := make([]byte, m)
	for i := range b {
		b[i] = byte((r + int64(i)) % 251)
	}
	return b
}
