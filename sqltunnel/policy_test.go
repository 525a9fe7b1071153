package sqltunnel

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// TestClientEncryptionRequired drives go-mssqldb through a listener with
// client_encryption: required, one row of the TDS encryption policy table
// (docs/architecture.md) each.
func TestClientEncryptionRequired(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))

	tests := []struct {
		name      string
		encrypt   string
		injectTLS bool // go-mssqldb builds no TLS config for encrypt=disable
		dialect   string
		clientEnc string
		answer    string
	}{
		{name: "off upgraded to full TLS", encrypt: "false", dialect: "tds7", clientEnc: "OFF", answer: "REQ"},
		{name: "on", encrypt: "true", dialect: "tds7", clientEnc: "ON", answer: "ON"},
		{name: "strict", encrypt: "strict", dialect: "tds8", answer: "ON"},
		{name: "not supported but starts TLS anyway", encrypt: "disable", injectTLS: true, dialect: "tds7", clientEnc: "NOT_SUP", answer: "REQ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			var inject *tls.Config
			if tc.injectTLS {
				inject = g.pki.clientTLS()
			}
			db := openDSN(t, g.dsn(testUser, testPass, map[string]string{"encrypt": tc.encrypt}), inject)
			if err := selectOne(ctx, db); err != nil {
				t.Fatalf("SELECT 1 through the gateway: %v", err)
			}
			want := map[string]any{"outcome": "ok", "dialect": tc.dialect, "encryption_answer": tc.answer}
			if tc.clientEnc != "" {
				want["client_encryption"] = tc.clientEnc
			}
			e := g.logs.waitMsg(t, "sql login", want)
			if v := e.ContextMap()["client_tls_version"]; v == "none" {
				t.Errorf("client leg not encrypted: %v", e.ContextMap())
			}
		})
	}
	// Every upstream session was fully encrypted.
	for _, r := range srv.Sessions() {
		if r.LoggedIn && r.Mode != tdstest.ModeFull {
			t.Errorf("upstream session %d: mode %v, want full TLS", r.ID, r.Mode)
		}
	}
}

// TestNotSupClientWithoutTrustCannotLogIn: go-mssqldb with encrypt=disable
// and no TLS configuration starts TLS after REQ, cannot verify the gateway
// with the system roots, and gives up; nothing reaches the upstream.
func TestNotSupClientWithoutTrustCannotLogIn(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	db := g.open(t, map[string]string{"encrypt": "disable", "certificate": "", "hostnameincertificate": ""})
	if err := selectOne(testCtx(t), db); err == nil {
		t.Fatal("login succeeded without TLS trust")
	}
	g.logs.waitMsg(t, "client TLS handshake failed; closing", nil)
	noLogin(t, srv)
}

// TestRawNotSupClientSendsLoginInClear: a client that sent NOT_SUP, was told
// REQ, and sends LOGIN7 in clear text is disconnected, the refusal is
// logged with its address, and nothing is forwarded.
func TestRawNotSupClientSendsLoginInClear(t *testing.T) {
	for _, policy := range []configs.ClientEncryption{configs.ClientEncryptionRequired, configs.ClientEncryptionStrict} {
		t.Run(string(policy), func(t *testing.T) {
			srv, caFile := upstreamDouble(t, tdstest.Config{})
			cfg := listenerConfig(srv.Addr(), caFile)
			cfg.ClientEncryption = policy
			g := startGateway(t, cfg)

			c := dialRaw(t, g.addr)
			a := c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptNotSup)})
			if a.Encryption == nil || *a.Encryption != tds.EncryptReq {
				t.Fatalf("answer %v, want REQ", a)
			}
			if err := c.send(tds.PacketLogin7, c.login7(testUser, testPass, 4096)); err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
			g.logs.waitMsg(t, "client refused encryption; closing", map[string]any{
				"remote": c.conn.LocalAddr().String(), "client_encryption": "NOT_SUP",
			})
			noLogin(t, srv)
			g.logs.assertNoSecret(t, testPass)
		})
	}
}

// TestStrictListener: only TDS 8 clients log in; TDS 7.x clients that do
// TLS get an ERROR asking for Encrypt=Strict and never reach the upstream.
func TestStrictListener(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	cfg := listenerConfig(srv.Addr(), caFile)
	cfg.ClientEncryption = configs.ClientEncryptionStrict
	g := startGateway(t, cfg)

	for _, encrypt := range []string{"true", "false"} {
		t.Run("encrypt="+encrypt, func(t *testing.T) {
			err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": encrypt}))
			if err == nil {
				t.Fatal("TDS 7.x login succeeded on a strict listener")
			}
			if me := sqlError(t, err); me.Number != ErrorNumberStrictRequired || me.Class != errorClass {
				t.Fatalf("error %d class %d (%q), want %d class %d", me.Number, me.Class, me.Message, ErrorNumberStrictRequired, errorClass)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "refused", "error_number": ErrorNumberStrictRequired, "user": testUser})
		})
	}
	if n := len(srv.Sessions()); n != 0 {
		t.Fatalf("the upstream saw %d sessions for refused clients", n)
	}
	t.Run("encrypt=strict", func(t *testing.T) {
		if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "strict"})); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAllowPlaintextLoopback: a NOT_SUP client on loopback is served in
// clear text on the client leg while the upstream leg stays encrypted; an
// OFF client still gets full TLS.
func TestAllowPlaintextLoopback(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	cfg := listenerConfig(srv.Addr(), caFile)
	cfg.ClientEncryption = configs.ClientEncryptionAllowPlaintextLoopback
	g := startGateway(t, cfg)

	t.Run("not supported", func(t *testing.T) {
		db := g.open(t, map[string]string{"encrypt": "disable", "certificate": "", "hostnameincertificate": ""})
		if err := selectOne(testCtx(t), db); err != nil {
			t.Fatal(err)
		}
		g.logs.waitMsg(t, "sql login", map[string]any{
			"outcome": "ok", "client_encryption": "NOT_SUP", "encryption_answer": "NOT_SUP",
			"client_tls_version": "none", "upstream_tls_version": "TLS 1.2",
		})
	})
	t.Run("off", func(t *testing.T) {
		if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "false"})); err != nil {
			t.Fatal(err)
		}
		g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "client_encryption": "OFF", "encryption_answer": "REQ", "client_tls_version": "TLS 1.2"})
	})
	for _, r := range srv.Sessions() {
		if r.Mode != tdstest.ModeFull {
			t.Errorf("upstream session %d: mode %v, want full TLS", r.ID, r.Mode)
		}
	}
}

// TestPreloginAnswer checks details of the answer: no client-certificate
// bit, MARS only when the upstream grants it, a well-formed answer even when
// the upstream is down.
func TestPreloginAnswer(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))

	c := dialRaw(t, g.addr)
	a := c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn | tds.EncryptClientCert), MARS: new(true), InstOpt: tds.InstanceOpt("SQLEXPRESS")})
	if a.Encryption == nil || *a.Encryption != tds.EncryptOn {
		t.Errorf("encryption answer %v, want ON without the client-certificate bit", a.Encryption)
	}
	if a.MARS == nil || *a.MARS {
		t.Errorf("MARS answer %v, want false (tdstest has no MARS)", a.MARS)
	}
	if a.InstanceMismatch() {
		t.Error("instance mismatch answered")
	}
	// Complete TLS so that the session ends cleanly.
	tc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	_ = tc.Close()
}
