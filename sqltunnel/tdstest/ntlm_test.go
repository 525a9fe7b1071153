package tdstest

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	_ "github.com/microsoft/go-mssqldb/integratedauth/ntlm" // registers authenticator=ntlm
)

// ntlmDSN is a go-mssqldb DSN that logs in as CORP\<user> with NTLM,
// encryption required and the server verified.
func ntlmDSN(f *fixture, user, password string, extra map[string]string) string {
	q := url.Values{}
	q.Set("database", "master")
	q.Set("encrypt", "true")
	q.Set("certificate", f.rootFile)
	q.Set("hostNameInCertificate", testHost)
	q.Set("authenticator", "ntlm")
	for k, v := range extra {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(`CORP\`+user, password), Host: f.srv.Addr(), RawQuery: q.Encode()}
	return u.String()
}

// TestNTLMWithGoMSSQL checks the double's NTLMv2 verification against a
// real client, go-mssqldb's NTLM authenticator: the right password logs in
// (and the session runs queries), a wrong one gets 18456 naming the
// Windows login, and with Extended Protection required only a client that
// binds its authentication to this server's TLS channel gets in.
func TestNTLMWithGoMSSQL(t *testing.T) {
	tests := []struct {
		name     string
		epa      bool              // the double's ExtendedProtection
		password string            // the client's
		extra    map[string]string // DSN parameters
		number   int32             // the error the client gets; 0: logged in
	}{
		{"right password", false, "s3cret-Pw", nil, 0},
		{"wrong password", false, "wrong", nil, 18456},
		{"unknown user", false, "s3cret-Pw", map[string]string{"user": "mallory"}, 18456},
		{"epa required, client binds", true, "s3cret-Pw", map[string]string{"epa enabled": "true"}, 0},
		{"epa required, client does not bind", true, "s3cret-Pw", nil, 18452},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, Config{Encryption: EncryptForced,
				NTLMUsers: map[string]string{"alice": "s3cret-Pw"}, ExtendedProtection: tt.epa})
			user := "alice"
			extra := map[string]string{}
			for k, v := range tt.extra {
				if k == "user" {
					user = v
					continue
				}
				extra[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db, conn, err := openMSSQL(t, ctx, ntlmDSN(f, user, tt.password, extra))
			if tt.number != 0 {
				var me mssql.Error
				if !errors.As(err, &me) || me.Number != tt.number {
					t.Fatalf("login error %v, want mssql.Error %d", err, tt.number)
				}
				if tt.number == 18456 && !strings.HasSuffix(me.Message, "Login failed for user 'CORP\\"+user+"'.") {
					t.Errorf("message %q does not name the Windows login", me.Message)
				}
				return
			}
			if err != nil {
				t.Fatalf("NTLM login: %v", err)
			}
			defer conn.Close()
			var v int
			if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&v); err != nil || v != 1 {
				t.Fatalf("SELECT 1 after the NTLM login: %v, %d", err, v)
			}
			var rec *SessionRecord
			for _, r := range f.srv.Sessions() {
				if r.LoggedIn {
					rec = &r
				}
			}
			if rec == nil || rec.AuthScheme != "NTLM" || rec.User != `CORP\alice` {
				t.Errorf("session record %+v, want an NTLM login of CORP\\alice", rec)
			}
		})
	}
}
