package sqltunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// Real clients reaching a named instance of the gateway: each asks SQL
// Server Browser on UDP port 1434 of the host in its connection string,
// then connects to the port it was given. Each test has a loopback address
// of its own (tdstest.NewBrowser picks a free one) with the responder on
// port 1434 and the listener on port 0, both on that address.

const browserInstance = "SQLEXPRESS"

// browserGateway is a Listener announced by a browser.Responder, in front
// of a tdstest upstream.
type browserGateway struct {
	host     string // the loopback address of the responder and the listener
	port     int    // the listener's TCP port
	pki      *pki   // its certificate names gwHost and host
	logs     *logSink
	upstream *tdstest.Server
	reg      *prometheus.Registry // the responder's metrics
}

func startBrowserGateway(t *testing.T) *browserGateway {
	t.Helper()
	m := browser.NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	b, err := tdstest.NewBrowser("", zaptest.NewLogger(t), browser.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	up, caFile := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	cfg := listenerConfig(up.Addr(), caFile)
	cfg.Listen = net.JoinHostPort(b.Host(), "0")
	cfg.Instance = browserInstance
	p := newPKI(t, gwHost, b.Host())
	logger, sink := newLogSink(t)
	l, err := New(cfg, p.serverTLS, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	port := l.Addr().(*net.TCPAddr).Port
	// What the wiring does with the bound listeners: announce each one
	// that has an instance name, with its port.
	if err := b.SetInstances(browser.Instance{Name: cfg.Instance, Port: port}); err != nil {
		t.Fatal(err)
	}
	return &browserGateway{host: b.Host(), port: port, pki: p, logs: sink, upstream: up, reg: reg}
}

// answered returns gateway_sql_browser_requests_total{type,result="answered"}.
func (g *browserGateway) answered(t *testing.T, typ browser.MessageType) int {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gateway_sql_browser_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["type"] == typ.String() && labels["result"] == browser.ResultAnswered {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// waitUpstreamLogin waits for the upstream's first session to have logged
// in and returns its record.
func (g *browserGateway) waitUpstreamLogin(t *testing.T) tdstest.SessionRecord {
	t.Helper()
	recs, err := g.upstream.Wait(testCtx(t), func(r []tdstest.SessionRecord) bool { return len(r) > 0 && r[0].LoggedIn })
	if err != nil {
		t.Fatalf("no login reached the upstream: %v (sessions %+v)", err, g.upstream.Sessions())
	}
	return recs[0]
}

// browserClientMissing skips a test whose real client is not installed, or
// fails it when CI is set (CI installs every client: .ci/install-deps).
func browserClientMissing(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI is set: real clients are required)", err)
	}
	t.Skip(err)
}

// TestSQLBrowserGoMSSQL: go-mssqldb with sqlserver://user:pw@HOST/INSTANCE
// asks CLNT_UCAST_EX and connects to the listener it was told.
func TestSQLBrowserGoMSSQL(t *testing.T) {
	g := startBrowserGateway(t)
	q := url.Values{}
	q.Set("database", testDB)
	q.Set("encrypt", "true")
	q.Set("certificate", g.pki.rootFile)
	q.Set("hostnameincertificate", gwHost)
	q.Set("connection timeout", "20")
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(testUser, testPass), Host: g.host, Path: browserInstance, RawQuery: q.Encode()}
	db := openDSN(t, u.String(), nil)
	ctx := testCtx(t)
	if err := selectOne(ctx, db); err != nil {
		t.Fatalf("go-mssqldb to %s\\%s: %v", g.host, browserInstance, err)
	}
	if n := g.answered(t, browser.TypeUnicast); n < 1 {
		t.Errorf("%d CLNT_UCAST_EX answered, want at least 1", n)
	}
	rec := g.waitUpstreamLogin(t)
	if rec.User != testUser {
		t.Errorf("upstream login user %q", rec.User)
	}
	g.logs.assertNoSecret(t, testPass)
}

// TestSQLBrowserFreeTDS: FreeTDS with "instance = NAME" in freetds.conf
// asks CLNT_UCAST_INST.
func TestSQLBrowserFreeTDS(t *testing.T) {
	tsql, err := exec.LookPath("tsql")
	if err != nil {
		browserClientMissing(t, errors.New("tsql not found: install the Debian package freetds-bin"))
	}
	g := startBrowserGateway(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "freetds.conf")
	body := "[global]\n\ttds version = 7.4\n[gw]\n\thost = " + g.host + "\n\tinstance = " + strings.ToLower(browserInstance) +
		"\n\tencryption = require\n\tca file = " + g.pki.rootFile + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(testCtx(t), tsql, "-S", "gw", "-U", testUser, "-P", testPass)
	cmd.Stdin = strings.NewReader("SELECT 1\ngo\nexit\n")
	cmd.Env = append(os.Environ(), "FREETDSCONF="+conf, "TDSVER=7.4", "HOME="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || !strings.Contains(out.String(), "\n1\n") {
		t.Fatalf("tsql to %s\\%s: %v\n%s", g.host, browserInstance, err, &out)
	}
	if n := g.answered(t, browser.TypeInstance); n < 1 {
		t.Errorf("%d CLNT_UCAST_INST answered, want at least 1", n)
	}
	rec := g.waitUpstreamLogin(t)
	if rec.Library == "" || rec.User != testUser {
		t.Errorf("upstream login: library %q user %q", rec.Library, rec.User)
	}
}

// TestSQLBrowserTedious: tedious with options.instanceName asks
// CLNT_BCAST_EX (unicast) and picks its instance from the list.
func TestSQLBrowserTedious(t *testing.T) {
	if _, _, err := clients.TediousSetup(); err != nil {
		browserClientMissing(t, err)
	}
	g := startBrowserGateway(t)
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	res, err := clients.Tedious{
		Host: g.host, Instance: strings.ToLower(browserInstance), User: testUser, Password: testPass,
		Encrypt: true, CAFile: g.pki.rootFile,
	}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("tedious to %s\\%s: %s %s", g.host, browserInstance, res.Code, res.Error)
	}
	if res.Results.Select1 != 1 || res.Results.Version != tdstest.DefaultVersion {
		t.Errorf("results %+v", res.Results)
	}
	if n := g.answered(t, browser.TypeBroadcast); n < 1 {
		t.Errorf("%d CLNT_BCAST_EX answered, want at least 1", n)
	}
	if rec := g.waitUpstreamLogin(t); rec.Library != "Tedious" {
		t.Errorf("upstream login library %q", rec.Library)
	}
}

// TestSQLBrowserJTDS: jTDS with ;instance=NAME asks CLNT_BCAST_EX
// (unicast), connects with TLS, logs in through the gateway, and runs its
// session-setup batch (SELECT @@MAX_PRECISION and SET statements) and a
// query.
func TestSQLBrowserJTDS(t *testing.T) {
	if _, _, err := clients.JTDSSetup(); err != nil {
		browserClientMissing(t, err)
	}
	g := startBrowserGateway(t)
	ctx, cancel := context.WithTimeout(testCtx(t), time.Minute)
	defer cancel()
	res, err := clients.JTDS{
		URL:  "jdbc:jtds:sqlserver://" + g.host + "/" + testDB + ";instance=" + strings.ToLower(browserInstance) + ";ssl=require;loginTimeout=20",
		User: testUser, Password: testPass, Dir: t.TempDir(),
	}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := g.answered(t, browser.TypeBroadcast); n < 1 {
		t.Fatalf("%d CLNT_BCAST_EX answered, want at least 1 (jTDS: %+v)", n, res)
	}
	rec := g.waitUpstreamLogin(t)
	if rec.Library != "jTDS" || rec.User != testUser || rec.Mode != tdstest.ModeFull {
		t.Errorf("upstream login: library %q user %q mode %v", rec.Library, rec.User, rec.Mode)
	}
	if !res.OK {
		t.Fatalf("jTDS to %s\\%s failed: stage %s, %s %s", g.host, browserInstance, res.Stage, res.Code, res.Error)
	}
	if res.Results.Select1 != 1 {
		t.Errorf("SELECT 1 = %d", res.Results.Select1)
	}
}
