package sqltunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// TestUpstreamFailClosed: whatever is wrong with the upstream, the client
// completes its TLS handshake, sends LOGIN7 and gets an ERROR naming the
// problem; the upstream never receives the login.
func TestUpstreamFailClosed(t *testing.T) {
	otherRoot := newPKI(t, "other.test").rootFile
	upstreamCert, _, err := tdstest.NewCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	wrongPin := sha256.Sum256([]byte("not the certificate"))

	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}

	tests := []struct {
		name    string
		server  *tdstest.Config // nil: no upstream listening
		setup   func(u *configs.SQLUpstream, caFile string)
		number  int32
		message string // part of the client's error message
	}{
		{
			name:    "untrusted certificate",
			server:  &tdstest.Config{},
			setup:   func(u *configs.SQLUpstream, _ string) { u.CAFile = otherRoot },
			number:  ErrorNumberUpstreamCertificate,
			message: "certificate is not trusted",
		},
		{
			name:    "name mismatch",
			server:  &tdstest.Config{},
			setup:   func(u *configs.SQLUpstream, ca string) { u.CAFile, u.ServerName = ca, "sql.wrong.test" },
			number:  ErrorNumberUpstreamCertificate,
			message: "not valid for the server name",
		},
		{
			name:    "pin mismatch",
			server:  &tdstest.Config{Certificate: &upstreamCert},
			setup:   func(u *configs.SQLUpstream, _ string) { u.CAFile, u.PinSHA256 = "", hex.EncodeToString(wrongPin[:]) },
			number:  ErrorNumberUpstreamCertificate,
			message: "pin mismatch",
		},
		{
			name:    "answers NOT_SUP",
			server:  &tdstest.Config{Encryption: tdstest.EncryptNotSupported},
			number:  ErrorNumberUpstreamNoEncryption,
			message: "does not support encryption (answered NOT_SUP); refusing to send the login",
		},
		{
			name:    "answers OFF",
			server:  &tdstest.Config{Faults: tdstest.Faults{AnswerEncryption: new(tds.EncryptOff)}},
			number:  ErrorNumberUpstreamNoEncryption,
			message: "answered OFF",
		},
		{
			name:    "unreachable",
			setup:   func(u *configs.SQLUpstream, _ string) { u.Address = closedAddr() },
			number:  ErrorNumberUpstreamUnreachable,
			message: "unreachable",
		},
		{
			name:    "strict upstream that only speaks TDS 7",
			server:  &tdstest.Config{Encryption: tdstest.EncryptNotSupported},
			setup:   func(u *configs.SQLUpstream, _ string) { u.Encryption = configs.UpstreamEncryptionStrict },
			number:  ErrorNumberUpstreamProtocol,
			message: "TLS handshake failed",
		},
		{
			name:   "disabled_loopback upstream that forces encryption",
			server: &tdstest.Config{Encryption: tdstest.EncryptForced},
			setup: func(u *configs.SQLUpstream, _ string) {
				u.Encryption, u.CAFile = configs.UpstreamEncryptionDisabledLoopback, ""
			},
			number:  ErrorNumberUpstreamNoEncryption,
			message: "requires encryption",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv *tdstest.Server
			addr, caFile := "", ""
			if tc.server != nil {
				srv, caFile = upstreamDouble(t, *tc.server)
				addr = srv.Addr()
			}
			cfg := listenerConfig(addr, caFile)
			if tc.setup != nil {
				tc.setup(&cfg.Upstream, caFile)
			}
			g := startGateway(t, cfg)

			err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
			if err == nil {
				t.Fatal("login succeeded")
			}
			me := sqlError(t, err)
			if me.Number != tc.number || me.Class != errorClass || me.ServerName != errorServerName {
				t.Fatalf("error %d class %d server %q: %q; want %d class %d server %q",
					me.Number, me.Class, me.ServerName, me.Message, tc.number, errorClass, errorServerName)
			}
			if !strings.Contains(me.Message, "gateway: upstream "+cfg.Upstream.Address) || !strings.Contains(me.Message, tc.message) {
				t.Errorf("message %q does not name the upstream and %q", me.Message, tc.message)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "upstream_error", "error_number": tc.number, "user": testUser})
			if srv != nil {
				noLogin(t, srv)
			}
			g.logs.assertNoSecret(t, testPass)
		})
	}
}

// TestUpstreamModes: the verification and encryption modes that work.
func TestUpstreamModes(t *testing.T) {
	cert, _, err := tdstest.NewCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	pin := hex.EncodeToString(sum[:])

	tests := []struct {
		name     string
		server   tdstest.Config
		setup    func(u *configs.SQLUpstream)
		verify   string
		upTLS    string
		wantMode tdstest.Mode
	}{
		{name: "ca", verify: "ca", upTLS: "TLS 1.2", wantMode: tdstest.ModeFull},
		{name: "ca with forced encryption", server: tdstest.Config{Encryption: tdstest.EncryptForced}, verify: "ca", upTLS: "TLS 1.2", wantMode: tdstest.ModeFull},
		{
			name:   "pin only",
			server: tdstest.Config{Certificate: &cert},
			setup:  func(u *configs.SQLUpstream) { u.CAFile, u.PinSHA256 = "", pin },
			verify: "pin", upTLS: "TLS 1.2", wantMode: tdstest.ModeFull,
		},
		{
			name:   "strict",
			server: tdstest.Config{Encryption: tdstest.EncryptStrict, MinTLSVersion: 0x0304},
			setup:  func(u *configs.SQLUpstream) { u.Encryption = configs.UpstreamEncryptionStrict },
			verify: "ca", upTLS: "TLS 1.3", wantMode: tdstest.ModeStrict,
		},
		{
			name:   "disabled_loopback",
			setup:  func(u *configs.SQLUpstream) { u.Encryption, u.CAFile = configs.UpstreamEncryptionDisabledLoopback, "" },
			verify: "none", upTLS: "none", wantMode: tdstest.ModeNone,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, caFile := upstreamDouble(t, tc.server)
			cfg := listenerConfig(srv.Addr(), caFile)
			if tc.setup != nil {
				tc.setup(&cfg.Upstream)
			}
			g := startGateway(t, cfg)
			if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
				t.Fatal(err)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "upstream_verify": tc.verify, "upstream_tls_version": tc.upTLS})
			recs := srv.Sessions()
			if len(recs) != 1 || recs[0].Mode != tc.wantMode {
				t.Fatalf("upstream sessions %+v, want one in mode %v", recs, tc.wantMode)
			}
		})
	}
}

// TestUpstreamResumesSessions: the second session's upstream handshake
// resumes the first one's TLS session, in TDS 7.x (TLS 1.2 inside PRELOGIN)
// and in TDS 8 (TLS 1.3), and the audit line says so.
func TestUpstreamResumesSessions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server tdstest.Config
		strict bool
	}{
		{name: "tds7", server: tdstest.Config{Encryption: tdstest.EncryptForced}},
		{name: "tds8", server: tdstest.Config{Encryption: tdstest.EncryptStrict}, strict: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, caFile := upstreamDouble(t, tc.server)
			cfg := listenerConfig(srv.Addr(), caFile)
			if tc.strict {
				cfg.Upstream.Encryption = configs.UpstreamEncryptionStrict
			}
			g := startGateway(t, cfg)
			for i, want := range []bool{false, true} {
				db := g.open(t, map[string]string{"encrypt": "true"})
				if err := selectOne(testCtx(t), db); err != nil {
					t.Fatalf("session %d: %v", i+1, err)
				}
				_ = db.Close() // a new connection, so a new upstream handshake, for the next one
				g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "upstream_tls_resumed": want})
			}
			recs := srv.Sessions()
			if len(recs) != 2 || recs[0].TLSResumed || !recs[1].TLSResumed || !recs[1].LoginInTLS {
				t.Fatalf("upstream sessions %+v, want a full handshake then a resumed one, the login inside TLS", recs)
			}
		})
	}
}

// TestListenerResumesClientSessions: a client that keeps TLS sessions (as
// SChannel-based drivers do) resumes its session with the gateway's TDS 7.x
// listener on its next connection.
func TestListenerResumesClientSessions(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	cfg := g.pki.clientTLS()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i, want := range []bool{false, true} {
		c := dialRaw(t, g.addr)
		c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})
		tc, err := tdstls.Client(context.Background(), c.conn, cfg)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if got := tc.ConnectionState().DidResume; got != want {
			t.Errorf("connection %d: resumed %v, want %v", i+1, got, want)
		}
		_ = tc.Close()
	}
}

// TestInsecureSkipVerifyWarnsEveryConnection: with insecure_skip_verify the
// login works, and every connection logs a warning with the upstream
// certificate's SHA-256, ready for pin_sha256.
func TestInsecureSkipVerifyWarnsEveryConnection(t *testing.T) {
	cert, _, err := tdstest.NewCertificate("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	srv, _ := upstreamDouble(t, tdstest.Config{Certificate: &cert})
	cfg := listenerConfig(srv.Addr(), "")
	cfg.Upstream.InsecureSkipVerify = true
	g := startGateway(t, cfg)
	for i := 1; i <= 2; i++ {
		db := g.open(t, map[string]string{"encrypt": "true"})
		if err := selectOne(testCtx(t), db); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		g.logs.waitMsg(t, "upstream certificate not verified (insecure_skip_verify); pin it with upstream.pin_sha256",
			map[string]any{"conn_id": i, "upstream_sha256": hex.EncodeToString(sum[:])})
		g.logs.waitMsg(t, "sql login", map[string]any{"conn_id": i, "outcome": "ok", "upstream_verify": "insecure"})
	}
}
