package test

import (
	"strings"
	"testing"

	_ "github.com/microsoft/go-mssqldb/integratedauth/ntlm" // registers authenticator=ntlm

	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The Windows login the NTLM tests use, verified by the double as NTLMv2.
const (
	ntlmUser     = `CORP\carol`
	ntlmPassword = "Spring-2026-ntlm"
)

func ntlmBackend(t *testing.T, epa bool) *sqlBackend {
	t.Helper()
	registerSecret(ntlmPassword)
	return newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced,
		NTLMUsers: map[string]string{"carol": ntlmPassword}, ExtendedProtection: epa})
}

// TestSQLIntegratedAuth: integrated (NTLM) logins through the gateway
// binary with two independent clients, go-mssqldb's NTLM authenticator
// and FreeTDS, against a double that verifies NTLMv2: the right password
// logs in and queries run, a wrong one gets the server's 18456, and a
// server that requires Extended Protection gets 50908 saying what to
// change. FreeTDS is also run straight at the double, to check the double.
func TestSQLIntegratedAuth(t *testing.T) {
	t.Parallel()
	t.Run("go-mssqldb", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name     string
			epa      bool
			password string
			number   int32
		}{
			{"right password", false, ntlmPassword, 0},
			{"wrong password", false, "Summer-2026-wrong", 18456},
			{"extended protection required", true, ntlmPassword, sqltunnel.ErrorNumberChannelBinding},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				b := ntlmBackend(t, tc.epa)
				g := startSQLGateway(t, newSQLConfig(t, "required", b.srv.Addr(), b.caFile))
				params := verifiedParams("true", g.rootFile)
				params["authenticator"] = "ntlm"
				db := openMSSQL(t, mssqlDSNFor(g.addr, ntlmUser, tc.password, params))
				err := db.PingContext(sqlCtx(t))
				if tc.number == 0 {
					if err != nil {
						t.Fatalf("NTLM login through the gateway: %v", err)
					}
					if err := mssqlQueries(sqlCtx(t), db); err != nil {
						t.Fatalf("queries after the NTLM login: %v", err)
					}
					g.loginLine(t, map[string]string{"outcome": "ok", "auth": "integrated"})
					_ = db.Close()
					rec, err := b.srv.WaitSession(sqlCtx(t), 1)
					if err != nil {
						t.Fatalf("upstream session did not end: %v", err)
					}
					if !rec.LoggedIn || rec.Mode != tdstest.ModeFull || !rec.LoginInTLS || rec.AuthScheme != "NTLM" || rec.User != ntlmUser {
						t.Errorf("upstream leg: logged in %t, mode %v, LOGIN7 in TLS %t, %s as %q; want a full-TLS NTLM login as %q",
							rec.LoggedIn, rec.Mode, rec.LoginInTLS, rec.AuthScheme, rec.User, ntlmUser)
					}
					return
				}
				me := mssqlError(t, err)
				if me.Number != tc.number {
					t.Fatalf("error %d %q, want %d", me.Number, me.Message, tc.number)
				}
				if tc.number == sqltunnel.ErrorNumberChannelBinding && !strings.Contains(me.Message, "Extended Protection") {
					t.Errorf("message %q does not say Extended Protection", me.Message)
				}
				g.loginLine(t, map[string]string{"outcome": "login_failed", "auth": "integrated"})
			})
		}
	})
	t.Run("freetds", func(t *testing.T) {
		t.Parallel()
		needTSQL(t)
		t.Run("direct", func(t *testing.T) {
			t.Parallel()
			b := ntlmBackend(t, false)
			out, err := runTSQLAs(t, b.srv.Port(), ntlmUser, ntlmPassword, "\tencryption = require\n\tca file = "+b.caFile+"\n", tsqlScript)
			if err != nil || !tsqlOK(out) {
				t.Fatalf("tsql straight to the double: %v\n%s", err, out)
			}
		})
		for _, tc := range []struct {
			name, password string
			ok             bool
		}{{"right password", ntlmPassword, true}, {"wrong password", "Summer-2026-wrong", false}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				b := ntlmBackend(t, false)
				g := startSQLGateway(t, newSQLConfig(t, "required", b.srv.Addr(), b.caFile))
				out, err := runTSQLAs(t, g.port, ntlmUser, tc.password, "\tencryption = require\n\tca file = "+g.rootFile+"\n", tsqlScript)
				if tc.ok {
					if err != nil || !tsqlOK(out) {
						t.Fatalf("tsql NTLM through the gateway: %v\n%s", err, out)
					}
					g.loginLine(t, map[string]string{"outcome": "ok", "auth": "integrated"})
					return
				}
				if tsqlOK(out) || !strings.Contains(out, "18456") {
					t.Fatalf("tsql with a wrong NTLM password: %v\n%s\nwant error 18456", err, out)
				}
			})
		}
	})
}
