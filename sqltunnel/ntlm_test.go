package sqltunnel

import (
	"context"
	"strings"
	"testing"

	_ "github.com/microsoft/go-mssqldb/integratedauth/ntlm" // registers authenticator=ntlm

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestNTLMThroughGateway: go-mssqldb's NTLM authenticator logs in through
// the gateway to a double that verifies NTLMv2 for real (the SSPI round
// trip relayed both ways, both legs encrypted); a wrong password gets the
// server's 18456; a server demanding Extended Protection gets 50908, which
// says what to change — even from a client that binds its authentication,
// since it binds it to the gateway's TLS channel.
func TestNTLMThroughGateway(t *testing.T) {
	tests := []struct {
		name     string
		epa      bool
		password string
		params   map[string]string
		number   int32 // 0: logged in
		outcome  string
	}{
		{"right password", false, "Winter-2026", nil, 0, "ok"},
		{"wrong password", false, "wrong", nil, 18456, "login_failed"},
		{"extended protection, client binds", true, "Winter-2026", map[string]string{"epa enabled": "true"}, ErrorNumberChannelBinding, "login_failed"},
		{"extended protection, client does not bind", true, "Winter-2026", nil, ErrorNumberChannelBinding, "login_failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, caFile := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced,
				NTLMUsers: map[string]string{"bob": "Winter-2026"}, ExtendedProtection: tt.epa})
			g := startGateway(t, listenerConfig(up.Addr(), caFile))
			params := map[string]string{"encrypt": "true", "authenticator": "ntlm"}
			for k, v := range tt.params {
				params[k] = v
			}
			db := openDSN(t, g.dsn(`CORP\bob`, tt.password, params), nil)
			ctx := testCtx(t)
			err := selectOne(ctx, db)
			want := map[string]any{"outcome": tt.outcome, "auth": "integrated"}
			if tt.number != 0 {
				want["error_number"] = tt.number
			}
			g.logs.waitMsg(t, "sql login", want)
			if tt.number == 0 {
				if err != nil {
					t.Fatalf("NTLM login through the gateway: %v", err)
				}
				var n int
				if err := db.QueryRowContext(context.Background(), "SELECT 1").Scan(&n); err != nil {
					t.Fatalf("a second query: %v", err)
				}
				var logged bool
				for _, r := range up.Sessions() {
					if r.LoggedIn && r.AuthScheme == "NTLM" && r.User == `CORP\bob` && r.Mode == tdstest.ModeFull {
						logged = true
					}
				}
				if !logged {
					t.Errorf("the double saw no encrypted NTLM login of CORP\\bob: %+v", up.Sessions())
				}
				return
			}
			me := sqlError(t, err)
			if me.Number != tt.number {
				t.Fatalf("error %d %q, want %d", me.Number, me.Message, tt.number)
			}
			if tt.number == ErrorNumberChannelBinding && !strings.Contains(me.Message, "Extended Protection") {
				t.Errorf("message %q does not name Extended Protection", me.Message)
			}
			// The SSPI blobs and the password never reach the log.
			g.logs.assertNoSecret(t, tt.password)
			g.logs.assertNoSecret(t, "NTLMSSP")
		})
	}
}
