package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// The policy table of docs/architecture.md ("TDS encryption policy"), client
// by client, through the real binary.
// Every case has its own double and gateway (sqlEnv) and checks three
// things: what the client saw, the gateway's "sql login" audit line for the
// client leg, and the double's record of the upstream leg (fully encrypted,
// LOGIN7 inside TLS; or no login at all when the client was refused).
// Each test starts with one direct connection to a double, as a control
// that the client and the double work together without the gateway.

// loginWant is what a successful through-gateway login must show.
type loginWant struct {
	dialect   string // tds7 | tds8
	clientEnc string // client_encryption as sent
	answer    string // encryption_answer
	clientTLS string // client_tls_version
}

// checkLoginOK checks the audit line and the upstream record of a
// successful login through env's gateway.
func (env *sqlEnv) checkLoginOK(t *testing.T, w loginWant) {
	t.Helper()
	e := env.gw.loginLine(t, map[string]string{
		"outcome": "ok", "dialect": w.dialect, "client_encryption": w.clientEnc,
		"encryption_answer": w.answer, "user": sqlUser,
	})
	assertEncryptedClientLeg(t, e, w.clientTLS)
	env.backend.upstreamFull(t)
}

// checkRefused checks a client that did not get to log in (it would not
// encrypt, or did not trust the gateway): logged with its address, no
// successful login, no login upstream.
func (env *sqlEnv) checkRefused(t *testing.T) {
	t.Helper()
	e := env.gw.refusalLine(t)
	t.Logf("gateway: %q (during %v, error %v)", e.str("msg"), e["during"], e["error"])
	env.gw.assertNoLoginOK(t)
	env.backend.noUpstreamLogin(t)
}

// TestSQLGoMSSQL drives go-mssqldb through the gateway with each encrypt
// setting.
func TestSQLGoMSSQL(t *testing.T) {
	t.Parallel()
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
		db := openMSSQL(t, mssqlDSN(b.srv.Addr(), verifiedParams("true", b.caFile)))
		if err := mssqlQueries(sqlCtx(t), db); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		b.upstreamFull(t)
	})
	ok := []struct {
		encrypt string
		want    loginWant
	}{
		// OFF ("login-only") is answered REQ: the client upgrades.
		{"false", loginWant{"tds7", "OFF", "REQ", "TLS 1.2"}},
		{"true", loginWant{"tds7", "ON", "ON", "TLS 1.2"}},
		// go-mssqldb sends ENCRYPTION 0x04 (its "strict" value) in the
		// PRELOGIN inside TLS; MS-TDS 2.2.6.5 says TDS 8 ignores it.
		{"strict", loginWant{"tds8", "Encryption(0x04)", "ON", "TLS 1.3"}},
	}
	for _, tc := range ok {
		t.Run(tc.encrypt, func(t *testing.T) {
			t.Parallel()
			env := newSQLEnv(t, "required")
			db := openMSSQL(t, mssqlDSN(env.gw.addr, verifiedParams(tc.encrypt, env.gw.rootFile)))
			if err := mssqlQueries(sqlCtx(t), db); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			env.checkLoginOK(t, tc.want)
		})
	}
	// The client really verifies: trusting another CA, it gives up.
	t.Run("true_untrusted", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		err := mssqlQueries(sqlCtx(t), openMSSQL(t, mssqlDSN(env.gw.addr, verifiedParams("true", env.backend.caFile))))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("go-mssqldb trusting another CA: %v, want a certificate error", err)
		}
		env.checkRefused(t)
	})
	// encrypt=disable sends NOT_SUP and is answered REQ. go-mssqldb then
	// starts TLS anyway, but with disable it builds no TLS configuration
	// from the DSN: certificate= and hostNameInCertificate= are ignored and
	// it verifies against the system roots for the DSN host. The internal
	// CA is not among them, so the handshake fails and the client is
	// refused; it never ends up in clear text.
	t.Run("disable", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		db := openMSSQL(t, mssqlDSN(env.gw.addr, verifiedParams("disable", env.gw.rootFile)))
		err := mssqlQueries(sqlCtx(t), db)
		if err == nil {
			t.Fatal("encrypt=disable logged in, want a failed TLS handshake (system roots do not hold the internal CA)")
		}
		t.Logf("go-mssqldb error (expected): %v", err)
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error %q does not come from certificate verification", err)
		}
		env.checkRefused(t)
	})
	// The same client given a TLS configuration trusting the internal root
	// (possible only through msdsn.Config.TLSConfig) completes full TLS.
	t.Run("disable_with_tls_config", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		pem, err := os.ReadFile(env.gw.rootFile)
		if err != nil {
			t.Fatal(err)
		}
		tlsConfig := &tls.Config{RootCAs: testpki.MustPoolOf(t, pem), ServerName: sqlHost}
		db := openMSSQLWithTLS(t, mssqlDSN(env.gw.addr, map[string]string{"encrypt": "disable"}), tlsConfig)
		if err := mssqlQueries(sqlCtx(t), db); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		env.checkLoginOK(t, loginWant{"tds7", "NOT_SUP", "REQ", "TLS 1.2"})
	})
}

// TestSQLFreeTDS drives FreeTDS tsql (TDS 7.4) through the gateway.
func TestSQLFreeTDS(t *testing.T) {
	t.Parallel()
	needTSQL(t)
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
		out, err := runTSQL(t, b.srv.Port(), "\tencryption = require\n\tca file = "+b.caFile+"\n", tsqlScript)
		if err != nil || !tsqlOK(out) {
			t.Fatalf("tsql: %v\n%s", err, out)
		}
		b.upstreamFull(t)
	})
	tests := []struct {
		name string
		conf string // besides "ca file = <gateway root>"
		want loginWant
	}{
		// Default: OFF, answered REQ, upgraded to full TLS.
		{"default", "", loginWant{"tds7", "OFF", "REQ", "TLS 1.2"}},
		{"require", "\tencryption = require\n", loginWant{"tds7", "ON", "ON", "TLS 1.2"}},
		// off sends NOT_SUP; FreeTDS starts TLS anyway after REQ.
		{"off", "\tencryption = off\n", loginWant{"tds7", "NOT_SUP", "REQ", "TLS 1.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newSQLEnv(t, "required")
			out, err := runTSQL(t, env.gw.port, tc.conf+"\tca file = "+env.gw.rootFile+"\n", tsqlScript)
			if err != nil || !tsqlOK(out) {
				t.Fatalf("tsql: %v\n%s", err, out)
			}
			env.checkLoginOK(t, tc.want)
		})
	}
	// FreeTDS verifies whenever "ca file" is set, whatever the encryption
	// setting: trusting another CA than the gateway's, it gives up and
	// nothing reaches the upstream. (Without "ca file" it trusts any
	// certificate; it also checks the name: -H 127.0.0.1 fails.)
	for _, tc := range tests {
		t.Run(tc.name+"_untrusted", func(t *testing.T) {
			t.Parallel()
			env := newSQLEnv(t, "required")
			out, _ := runTSQL(t, env.gw.port, tc.conf+"\tca file = "+env.backend.caFile+"\n", tsqlScript)
			if tsqlOK(out) {
				t.Fatalf("tsql trusted the gateway with another CA's root:\n%s", out)
			}
			env.checkRefused(t)
		})
	}
}

// TestSQLTedious drives tedious 19 through the gateway.
func TestSQLTedious(t *testing.T) {
	t.Parallel()
	needTedious(t)
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
		checkTedious(t, runTedious(t, b.srv.Port(), true, b.caFile))
		b.upstreamFull(t)
	})
	tests := []struct {
		name    string
		encrypt any
		want    loginWant
	}{
		{"true", true, loginWant{"tds7", "ON", "ON", "TLS 1.2"}},
		// tedious sends NOT_SUP inside TLS in TDS 8 (ignored, MS-TDS 2.2.6.5).
		{"strict", "strict", loginWant{"tds8", "NOT_SUP", "ON", "TLS 1.3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newSQLEnv(t, "required")
			checkTedious(t, runTedious(t, env.gw.port, tc.encrypt, env.gw.rootFile))
			env.checkLoginOK(t, tc.want)
		})
	}
	t.Run("true_untrusted", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		if res := runTedious(t, env.gw.port, true, env.backend.caFile); res.OK {
			t.Fatalf("tedious trusted the gateway with another CA's root: %+v", res)
		} else {
			t.Logf("tedious error (expected): %s %s", res.Code, res.Error)
		}
		env.checkRefused(t)
	})
	// encrypt: false sends NOT_SUP; answered REQ, tedious raises an error
	// instead of starting TLS: refused, closed, logged.
	t.Run("false", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		res := runTedious(t, env.gw.port, false, env.gw.rootFile)
		if res.OK {
			t.Fatalf("tedious with encrypt: false logged in through a required listener: %+v", res)
		}
		t.Logf("tedious error (expected): %s %s", res.Code, res.Error)
		env.checkRefused(t)
	})
}

// TestSQLPytds drives pytds through the gateway.
func TestSQLPytds(t *testing.T) {
	t.Parallel()
	needPytds(t)
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
		checkPytds(t, runPytds(t, b.srv.Port(), b.caFile))
		b.upstreamFull(t)
	})
	// With cafile pytds sends ON and verifies the certificate and host.
	t.Run("cafile", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		checkPytds(t, runPytds(t, env.gw.port, env.gw.rootFile))
		env.checkLoginOK(t, loginWant{"tds7", "ON", "ON", "TLS 1.2"})
	})
	t.Run("cafile_untrusted", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		if res := runPytds(t, env.gw.port, env.backend.caFile); res.OK {
			t.Fatalf("pytds trusted the gateway with another CA's root: %+v", res)
		} else {
			t.Logf("pytds error (expected): %s", res.Error)
		}
		env.checkRefused(t)
	})
	// Without cafile pytds sends NOT_SUP; under required it is refused.
	t.Run("no_cafile_required", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "required")
		res := runPytds(t, env.gw.port, "")
		if res.OK {
			t.Fatalf("pytds without encryption logged in through a required listener: %+v", res)
		}
		t.Logf("pytds error (expected): %s", res.Error)
		env.checkRefused(t)
	})
	// Under allow_plaintext_loopback a loopback NOT_SUP client is served in
	// clear (sidecar mode) while the upstream leg stays encrypted.
	t.Run("no_cafile_allow_plaintext_loopback", func(t *testing.T) {
		t.Parallel()
		env := newSQLEnv(t, "allow_plaintext_loopback")
		checkPytds(t, runPytds(t, env.gw.port, ""))
		env.gw.loginLine(t, map[string]string{
			"outcome": "ok", "dialect": "tds7", "client_encryption": "NOT_SUP",
			"encryption_answer": "NOT_SUP", "client_tls_version": "none", "upstream_tls_version": "TLS 1.2",
		})
		env.backend.upstreamFull(t)
	})
}

// TestSQLJTDS: jTDS 1.3 through the gateway with ssl=require (encrypted,
// the certificate not checked) and ssl=authenticate (the chain verified
// against a trust store holding only the gateway's root), running real
// queries; with ssl=authenticate and another root trusted, jTDS refuses the
// gateway and nothing reaches the upstream.
func TestSQLJTDS(t *testing.T) {
	t.Parallel()
	_, _, err := clients.JTDSSetup()
	requireClient(t, err, "the Debian packages default-jdk-headless and libjtds-java")
	tests := []struct {
		name, ssl string
		trust     func(env *sqlEnv) string // the PEM root jTDS trusts; "" the JVM's default
		ok        bool
	}{
		{"require", "require", func(*sqlEnv) string { return "" }, true},
		{"authenticate", "authenticate", func(env *sqlEnv) string { return env.gw.rootFile }, true},
		// The upstream's CA: a real root, just not the gateway's.
		{"authenticate_untrusted", "authenticate", func(env *sqlEnv) string { return env.backend.caFile }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newSQLEnv(t, "required")
			ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
			defer cancel()
			res, err := clients.JTDS{
				URL:  fmt.Sprintf("jdbc:jtds:sqlserver://%s:%d/master;ssl=%s;loginTimeout=30", sqlHost, env.gw.port, tc.ssl),
				User: sqlUser, Password: sqlPassword, Dir: t.TempDir(), TrustPEM: tc.trust(env),
			}.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				if res.OK || res.Stage != "connect" {
					t.Fatalf("jTDS trusting another root: ok %v stage %q (%s), want a refused connection", res.OK, res.Stage, res.Error)
				}
				env.backend.noUpstreamLogin(t)
				return
			}
			if !res.OK {
				t.Fatalf("jTDS ssl=%s: stage %s, %s %s", tc.ssl, res.Stage, res.Code, res.Error)
			}
			if res.Results.Select1 != 1 || !strings.Contains(res.Results.Version, "Microsoft SQL Server") || len(res.Results.NRows) != 2 {
				t.Errorf("jTDS results %+v", res.Results)
			}
			e := env.gw.loginLine(t, map[string]string{"outcome": "ok", "library": "jTDS"})
			assertEncryptedClientLeg(t, e, e.str("client_tls_version"))
			if v := e.str("client_tls_version"); !strings.HasPrefix(v, "TLS 1.") {
				t.Errorf("sql login: client_tls_version %q, want TLS", v)
			}
		})
	}
}
