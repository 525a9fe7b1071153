package test

import (
	"slices"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestSQLWire is the wire check: taps record every byte between the client
// and the gateway and between the gateway and the double (the gateway's
// upstream.address is the second tap), and the test proves on both legs
// that after the PRELOGIN exchange everything is TLS and that neither the
// password nor the query text nor the result text crosses in any encoding.
// A sidecar case (allow_plaintext_loopback, pytds without TLS) is the
// control: its client leg is clear text, and the same search finds the
// secrets there, while its upstream leg is still encrypted.
func TestSQLWire(t *testing.T) {
	t.Parallel()
	secrets := needlesFor("password", sqlPassword, true)
	secrets = append(secrets, needlesFor("result text", textRow(0, 26), false)...)
	goQueries := append(needlesFor("marker query", sqlMarkerQuery, false), needlesFor("text query", sqlTextQuery, false)...)
	pytdsQueries := needlesFor("pytds query", "SELECT * FROM tdstest.nrows(2, 10000)", false)

	goClient := func(encrypt string) func(t *testing.T, g *sqlGateway, addr string) {
		return func(t *testing.T, g *sqlGateway, addr string) {
			db := openMSSQL(t, mssqlDSN(addr, verifiedParams(encrypt, g.rootFile)))
			if err := mssqlQueries(sqlCtx(t), db); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
		}
	}
	tests := []struct {
		name        string
		policy      string
		client      func(t *testing.T, g *sqlGateway, addr string)
		queries     []needle
		clientClear bool // the control: the client leg is expected in clear
	}{
		{name: "go-mssqldb_false", client: goClient("false"), queries: goQueries},
		{name: "go-mssqldb_true", client: goClient("true"), queries: goQueries},
		{name: "go-mssqldb_strict", client: goClient("strict"), queries: goQueries},
		{
			name: "freetds_default",
			client: func(t *testing.T, g *sqlGateway, addr string) {
				out, err := runTSQL(t, portOf(t, addr), "\tca file = "+g.rootFile+"\n", tsqlScript)
				if err != nil || !tsqlOK(out) {
					t.Fatalf("tsql: %v\n%s", err, out)
				}
			},
			queries: goQueries,
		},
		{
			name: "pytds_cafile",
			client: func(t *testing.T, g *sqlGateway, addr string) {
				checkPytds(t, runPytds(t, portOf(t, addr), g.rootFile))
			},
			queries: pytdsQueries,
		},
		{
			name:   "control_pytds_plaintext_loopback",
			policy: "allow_plaintext_loopback",
			client: func(t *testing.T, g *sqlGateway, addr string) {
				checkPytds(t, runPytds(t, portOf(t, addr), ""))
			},
			queries:     pytdsQueries,
			clientClear: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			policy := tc.policy
			if policy == "" {
				policy = "required"
			}
			b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
			upTap := newTap(t, b.srv.Addr())
			g := startSQLGateway(t, newSQLConfig(t, policy, upTap.addr(), b.caFile))
			clientTap := newTap(t, g.addr)

			tc.client(t, g, clientTap.addr())
			g.loginLine(t, map[string]string{"outcome": "ok"})
			b.upstreamFull(t)

			needles := append(append([]needle(nil), secrets...), tc.queries...)
			for _, leg := range []struct {
				name  string
				tap   *tap
				clear bool
			}{{"client leg", clientTap, tc.clientClear}, {"upstream leg", upTap, false}} {
				caps, err := leg.tap.wait(sqlCtx(t), 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(caps) != 1 {
					t.Fatalf("%s: %d connections, want 1", leg.name, len(caps))
				}
				c := caps[0]
				for _, dir := range []struct {
					name string
					b    []byte
				}{{"client to server", c.up}, {"server to client", c.down}} {
					sum, err := checkLegEncrypted(dir.b)
					hits := found(dir.b, needles)
					switch {
					case leg.clear:
						// The control must show that the checks can fail.
						if err == nil {
							t.Errorf("%s, %s: a clear-text leg passed as TLS (%v)", leg.name, dir.name, sum)
						}
						t.Logf("%s, %s (%d bytes, control): not TLS: %v; found %s", leg.name, dir.name, len(dir.b), err, strings.Join(hits, ", "))
					case err != nil:
						t.Errorf("%s, %s: %v", leg.name, dir.name, err)
					default:
						t.Logf("%s, %s (%d bytes): %v", leg.name, dir.name, len(dir.b), sum)
						if sum.appData == 0 {
							t.Errorf("%s, %s: no application data records", leg.name, dir.name)
						}
					}
					if !leg.clear && len(hits) > 0 {
						t.Errorf("%s, %s: found in clear: %s", leg.name, dir.name, strings.Join(hits, ", "))
					}
				}
				if leg.clear {
					hits := append(found(c.up, needles), found(c.down, needles)...)
					for _, want := range []string{"password (LOGIN7-obfuscated UTF-16LE)", "result text (UTF-16LE)", tc.queries[1].what} {
						if !slices.Contains(hits, want) {
							t.Errorf("control: %s not found on the clear-text leg: the search is blind", want)
						}
					}
				}
			}
		})
	}
}

// TestSQLWireCheckerControls proves the wire check on legs that are not
// encrypted end to end, without the gateway: go-mssqldb straight to doubles
// whose settings give login-only encryption (TLS for the first LOGIN7
// packet only, MS-TDS 2.2.6.5, the mode the gateway must never allow) and
// no encryption at all. The checker must reject both, and the search must
// find the query text.
func TestSQLWireCheckerControls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		server  tdstest.Encryption
		encrypt string
		mode    tdstest.Mode
	}{
		{"login_only", tdstest.EncryptOff, "false", tdstest.ModeLoginOnly},
		{"none", tdstest.EncryptNotSupported, "false", tdstest.ModeNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newSQLBackend(t, tdstest.Config{Encryption: tc.server})
			tp := newTap(t, b.srv.Addr())
			db := openMSSQL(t, mssqlDSN(tp.addr(), map[string]string{"encrypt": tc.encrypt, "trustServerCertificate": "true"}))
			if err := mssqlQueries(sqlCtx(t), db); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			rec, err := b.srv.WaitSession(sqlCtx(t), 1)
			if err != nil || rec.Mode != tc.mode {
				t.Fatalf("session mode %v (%v), want %v", rec.Mode, err, tc.mode)
			}
			caps, err := tp.wait(sqlCtx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			for dir, data := range map[string][]byte{"client to server": caps[0].up, "server to client": caps[0].down} {
				if sum, err := checkLegEncrypted(data); err == nil {
					t.Errorf("%s: %s leg passed as TLS: %v", dir, tc.mode, sum)
				} else {
					t.Logf("%s: rejected as expected: %v", dir, err)
				}
			}
			if hits := found(caps[0].up, needlesFor("marker query", sqlMarkerQuery, false)); len(hits) == 0 {
				t.Errorf("the marker query is not found on a %s leg: the search is blind", tc.mode)
			}
		})
	}
}
