package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The SQL end-to-end tests put the real gateway binary, with one `sql:`
// listener, in front of a tdstest SQL Server double started in the test
// process, and drive it with independent TDS clients (go-mssqldb, FreeTDS
// tsql, tedious, pytds). The double forces encryption and has its own CA,
// which the gateway trusts through upstream.ca_file; the gateway's own
// certificate comes from its internal CA, whose root the clients trust after
// `gateway ca root` exported it.

// SQL login of every double. The password is distinctive so that the wire
// check can search for it, and has characters that need escaping in URLs.
const (
	sqlUser     = "alice"
	sqlPassword = "Wire;Check-S3cret@9Qz"
	// sqlHost is the name on the gateway's and the double's certificates;
	// clients connect to it (it resolves to 127.0.0.1) and verify it.
	sqlHost = "localhost"
)

// gwSQLConfig is gwConfig with SQL listeners: the common type has no sql
// section, and JSON flattens the embedded struct.
type gwSQLConfig struct {
	gwConfig
	SQLBrowser *gwSQLBrowser `json:"sql_browser,omitempty"`
	SQL        []gwSQL       `json:"sql"`
}

type gwSQLBrowser struct {
	Listen string `json:"listen"`
}

type gwSQL struct {
	Name             string           `json:"name"`
	Listen           string           `json:"listen"`
	Hostname         string           `json:"hostname"`
	ClientEncryption string           `json:"client_encryption"`
	Instance         string           `json:"instance,omitempty"`
	Audit            *gwSQLAudit      `json:"audit,omitempty"`
	ProxyProtocol    *gwProxyProtocol `json:"proxy_protocol,omitempty"`
	MaxConnections   int              `json:"max_connections,omitempty"`
	Upstream         gwSQLUpstream    `json:"upstream"`
}

type gwSQLAudit struct {
	User        string `json:"user"`
	PasswordEnv string `json:"password_env"`
}

type gwSQLUpstream struct {
	Address            string   `json:"address"`
	Encryption         string   `json:"encryption"`
	ServerName         string   `json:"server_name,omitempty"`
	CAFile             string   `json:"ca_file,omitempty"`
	PinSHA256          string   `json:"pin_sha256,omitempty"`
	InsecureSkipVerify bool     `json:"insecure_skip_verify,omitempty"`
	Routing            string   `json:"routing,omitempty"`
	RoutingAllow       []string `json:"routing_allow,omitempty"`
}

// write saves the configuration in a fresh directory and returns the path.
func (c *gwSQLConfig) write(t *testing.T) string {
	t.Helper()
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "gateway.yaml", data)
}

// sqlBackend is a tdstest double with a certificate for localhost and
// 127.0.0.1 from a throwaway CA, whose root is in caFile.
type sqlBackend struct {
	srv    *tdstest.Server
	caFile string
}

// newSQLBackend starts a double with cfg, adding the certificate, the test
// login and a test logger (Info: one line per session) where cfg has none.
func newSQLBackend(t *testing.T, cfg tdstest.Config) *sqlBackend {
	t.Helper()
	// A year, as a real SQL Server's certificate (an audit flags shorter).
	cert, rootPEM, err := tdstest.NewCertificateFor(365*24*time.Hour, sqlHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Certificate == nil {
		cfg.Certificate = &cert
	}
	if cfg.Users == nil {
		cfg.Users = map[string]string{sqlUser: sqlPassword}
	}
	for _, pw := range cfg.Users {
		registerSecret(pw) // log hygiene: proof_secrets_test.go
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Named("tdstest")
	}
	srv, err := tdstest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &sqlBackend{srv: srv, caFile: writeFile(t, t.TempDir(), "backend-ca.pem", rootPEM)}
}

// sqlGateway is a running `gateway run` with one SQL listener.
type sqlGateway struct {
	*proc
	addr     string // sql_addr from "gateway ready"
	rootFile string // the internal CA root, exported by `gateway ca root`
	port     int    // the port of addr
}

// newSQLConfig is a SQL-only gateway (no HTTPS front, no admin listener)
// with one listener on a free 127.0.0.1 port for hostname sqlHost, in front
// of upstream with encryption required, trusting caFile.
func newSQLConfig(t *testing.T, policy, upstream, caFile string) *gwSQLConfig {
	t.Helper()
	return &gwSQLConfig{
		gwConfig: gwConfig{
			Log:          gwLog{Level: "info", Format: "json"},
			Storage:      filepath.Join(t.TempDir(), "storage"),
			DrainTimeout: "10s",
			TLS:          gwTLS{Issuer: "internal"},
			HTTP:         gwHTTP{Listen: "", RedirectListen: ""},
		},
		SQL: []gwSQL{{
			Name:             "e2e-sql",
			Listen:           "127.0.0.1:0",
			Hostname:         sqlHost,
			ClientEncryption: policy,
			Upstream: gwSQLUpstream{
				Address:    upstream,
				Encryption: "required",
				ServerName: sqlHost,
				CAFile:     caFile,
			},
		}},
	}
}

// startSQLGateway exports the internal root, runs the gateway and waits for
// "gateway ready", whose sql_addr field gives the listener's address.
func startSQLGateway(t *testing.T, cfg *gwSQLConfig) *sqlGateway {
	t.Helper()
	file := cfg.write(t)
	rootPEM := exportRoot(t, file)
	g := &sqlGateway{rootFile: writeFile(t, t.TempDir(), "gateway-root.pem", rootPEM)}
	g.proc = startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}})
	ready := g.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))
	g.addr = ready.str("sql_addr")
	if !strings.HasPrefix(g.addr, "127.") {
		t.Fatalf("gateway ready: sql_addr %q, want a loopback 127.x.y.z:PORT", g.addr)
	}
	g.port = portOf(t, g.addr)
	t.Cleanup(func() { g.assertNoSecret(t) })
	return g
}

// sqlEnv is one double behind one gateway, the unit every SQL end-to-end
// case runs in: each case has its own, so the double's session 1 and the
// gateway's first "sql login" line are that case's.
type sqlEnv struct {
	backend *sqlBackend
	gw      *sqlGateway
}

// newSQLEnv starts a double forcing encryption and a gateway in front of it
// with client_encryption policy.
func newSQLEnv(t *testing.T, policy string) *sqlEnv {
	t.Helper()
	b := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	g := startSQLGateway(t, newSQLConfig(t, policy, b.srv.Addr(), b.caFile))
	return &sqlEnv{backend: b, gw: g}
}

// sqlCtx bounds one step of a test generously: the machine's two cores are
// shared with other test runs.
func sqlCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// loginLine waits for the gateway's first "sql login" audit line and checks
// the fields in want (values compared as printed).
func (g *sqlGateway) loginLine(t *testing.T, want map[string]string) logEntry {
	t.Helper()
	e := g.waitLog(t, 60*time.Second, `"sql login"`, msgIs("sql login"))
	for k, v := range want {
		if got := fmt.Sprint(e[k]); got != v {
			t.Errorf("sql login: %s = %q, want %q (line %v)", k, got, v, e)
		}
	}
	return e
}

// assertEncryptedClientLeg checks the audit line of a login whose client leg
// was encrypted: a TLS version and cipher are named.
func assertEncryptedClientLeg(t *testing.T, e logEntry, wantTLS string) {
	t.Helper()
	if v := e.str("client_tls_version"); v != wantTLS {
		t.Errorf("sql login: client_tls_version %q, want %q", v, wantTLS)
	}
	if c := e.str("client_tls_cipher"); c == "" || c == "none" {
		t.Errorf("sql login: client_tls_cipher %q on an encrypted leg", c)
	}
	if v := e.str("upstream_tls_version"); v == "" || v == "none" {
		t.Errorf("sql login: upstream_tls_version %q, want TLS", v)
	}
}

// refusalLine waits for the line the gateway writes when a client gives up
// before its login, and checks that it names the client's address. Which
// line depends on when the client gives up: told to encrypt, it sends
// LOGIN7 in clear ("client refused encryption") or closes instead of
// starting TLS; rejecting the certificate, it aborts the handshake (both
// "client TLS handshake failed"), or, like Node.js, completes it and then
// closes without a login ("client closed the connection" while reading
// LOGIN7).
func (g *sqlGateway) refusalLine(t *testing.T) logEntry {
	t.Helper()
	e := g.waitLog(t, 60*time.Second, "a refused client", func(_ string, e logEntry) bool {
		switch e.str("msg") {
		case "client refused encryption; closing", "client TLS handshake failed; closing":
			return true
		case "client closed the connection":
			return e.str("during") == "reading LOGIN7"
		}
		return false
	})
	if r := e.str("remote"); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("%s: remote %q, want the client's address", e.str("msg"), r)
	}
	return e
}

// assertNoLoginLine checks that no login was reported as successful.
func (g *sqlGateway) assertNoLoginOK(t *testing.T) {
	t.Helper()
	for _, line := range g.stderr.all() {
		if e := decodeLog(line); e.str("msg") == "sql login" && e.str("outcome") == "ok" {
			t.Errorf("the gateway logged a successful login: %s", line)
		}
	}
}

// assertNoSecret checks that the password never appears in the gateway's
// output.
func (g *sqlGateway) assertNoSecret(t *testing.T) {
	t.Helper()
	if strings.Contains(strings.Join(g.stderr.all(), "\n")+g.stdout.String(), sqlPassword) {
		t.Error("the gateway logged the SQL password")
	}
}

// upstreamFull waits for the double's session 1 to end and checks that the
// gateway logged in on a fully encrypted upstream leg.
func (b *sqlBackend) upstreamFull(t *testing.T) tdstest.SessionRecord {
	t.Helper()
	rec, err := b.srv.WaitSession(sqlCtx(t), 1)
	if err != nil {
		t.Fatalf("upstream session did not end: %v (sessions %+v)", err, b.srv.Sessions())
	}
	if rec.Mode != tdstest.ModeFull || !rec.LoginInTLS || rec.TLSVersion == 0 {
		t.Errorf("upstream leg: mode %v, login in TLS %t, TLS %#x; want full TLS with LOGIN7 inside", rec.Mode, rec.LoginInTLS, rec.TLSVersion)
	}
	if !rec.LoggedIn || rec.User != sqlUser {
		t.Errorf("upstream leg: logged in %t as %q, want %q", rec.LoggedIn, rec.User, sqlUser)
	}
	if rec.Outcome != tdstest.OutcomeClosed || rec.Err != nil {
		t.Errorf("upstream leg: outcome %v (%v), want closed", rec.Outcome, rec.Err)
	}
	return rec
}

// noUpstreamLogin waits until every session of the double has ended and
// checks that none of them received a LOGIN7.
func (b *sqlBackend) noUpstreamLogin(t *testing.T) []tdstest.SessionRecord {
	t.Helper()
	recs, err := b.srv.Wait(sqlCtx(t), func(rs []tdstest.SessionRecord) bool {
		for _, r := range rs {
			if r.Outcome == tdstest.OutcomeActive {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("upstream sessions did not end: %v (%+v)", err, b.srv.Sessions())
	}
	for _, r := range recs {
		if r.LoggedIn || r.User != "" || r.LoginInTLS || r.LoginPackets != 0 {
			t.Errorf("upstream session %d received a login (user %q, outcome %v), want none", r.ID, r.User, r.Outcome)
		}
	}
	return recs
}

// requireClient returns when a client is usable (problem is nil).
// Otherwise it skips the test naming what to install (install, or the
// problem itself when it is a *clients.MissingError, which says it), or,
// when the CI environment variable is true, fails it: CI installs every
// client (.ci/install-deps), so a missing one must not let the suite pass
// without the real clients.
func requireClient(t *testing.T, problem error, install ...string) {
	t.Helper()
	if problem == nil {
		return
	}
	msg := problem.Error()
	if len(install) > 0 {
		msg += ": install " + strings.Join(install, " ")
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s (CI is set: real clients are required)", msg)
	}
	t.Skip(msg)
}
