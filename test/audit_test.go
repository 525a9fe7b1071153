package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// auditReport is the part of audit.json the tests read.
type auditReport struct {
	Verdict string `json:"verdict"`
	Summary struct {
		Pass, Fail, Warn, NotRun int
	} `json:"summary"`
	Gateway struct {
		Reachable bool `json:"reachable"`
	} `json:"gateway"`
	Checks []struct {
		ID, Section, Subject, Title, Verdict, Finding, Fix, Key string
	} `json:"checks"`
	Listeners []json.RawMessage `json:"listeners"`
	Upstreams []json.RawMessage `json:"upstreams"`
	SQLServer []struct {
		Version     string            `json:"version"`
		Connections []json.RawMessage `json:"connections"`
		Databases   []json.RawMessage `json:"databases"`
		Error       string            `json:"error"`
	} `json:"sql_server"`
	Traffic *struct {
		Logins        []json.RawMessage `json:"logins"`
		HTTPSRequests []json.RawMessage `json:"https_requests_by_tls"`
	} `json:"traffic"`
}

// runAudit runs `gateway audit` and returns its exit code, the decoded
// report and the report files' paths; the files go through the log-hygiene
// scan like every log.
func runAudit(t *testing.T, config string, env []string, flags ...string) (cliResult, auditReport, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report")
	res := runCLI(t, env, append([]string{"audit", "--config", config, "--out", out, "--since", "1h"}, flags...)...)
	var r auditReport
	data, err := os.ReadFile(filepath.Join(out, "audit.json"))
	if err != nil {
		t.Fatalf("audit.json: %v\n%s", err, res)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("audit.json: %v", err)
	}
	html, err := os.ReadFile(filepath.Join(out, "audit.html"))
	if err != nil {
		t.Fatalf("audit.html: %v", err)
	}
	saveLog(t, "audit-json", data)
	saveLog(t, "audit-html", html)
	return res, r, out
}

// demoAuditEnv is the environment of an audit of the demo: the audit
// login's password, registered as a secret the report must not contain.
func demoAuditEnv(info demoInfo) []string {
	registerSecret(info.AuditPassword)
	registerSecret(info.SQLPassword)
	return []string{info.AuditPasswordEnv + "=" + info.AuditPassword}
}

// TestAuditDemo: the demo, audited while it serves traffic, passes with
// every part of the report filled (a running gateway, listeners, legs,
// SQL Server's own view, traffic); the HTML renders in Chromium with no
// console error, and a screenshot is kept.
func TestAuditDemo(t *testing.T) {
	t.Parallel()
	_, info := startDemo(t)
	// Some traffic for the window: one HTTPS request and one SQL login.
	demoTraffic(t, info)
	res, r, out := runAudit(t, info.Config, demoAuditEnv(info))
	if res.code != 0 || r.Verdict != "pass" {
		t.Fatalf("the demo's audit: exit %d, verdict %s\n%s", res.code, r.Verdict, res.stdout)
	}
	if r.Summary.NotRun != 0 || !r.Gateway.Reachable {
		t.Errorf("%d checks not run, gateway reachable %v: every part should be measured", r.Summary.NotRun, r.Gateway.Reachable)
	}
	if len(r.Listeners) != 2 || len(r.Upstreams) != 2 || len(r.SQLServer) != 1 || r.SQLServer[0].Error != "" ||
		len(r.SQLServer[0].Connections) == 0 || len(r.SQLServer[0].Databases) != 2 || r.Traffic == nil ||
		len(r.Traffic.Logins) == 0 || len(r.Traffic.HTTPSRequests) == 0 {
		t.Errorf("report parts: %d listeners, %d upstreams, sql server %+v, traffic %+v", len(r.Listeners), len(r.Upstreams), r.SQLServer, r.Traffic)
	}
	ids := map[string]bool{}
	for _, c := range r.Checks {
		ids[c.ID] = true
		if c.Verdict == "fail" {
			t.Errorf("failed check %s on %s: %s", c.ID, c.Subject, c.Finding)
		}
	}
	for _, want := range []string{"https.protocols", "https.ciphers", "https.certificate", "https.hsts", "https.redirect",
		"sql.demo-sql.encrypt_off", "sql.demo-sql.encrypt_not_sup", "sql.demo-sql.tds7.protocols", "sql.demo-sql.tds8.ciphers",
		"upstream.sql.demo-sql.certificate", "upstream.sql.demo-sql.forces_encryption", "sql_server.demo-sql.connections",
		"sql_server.demo-sql.tde", "traffic.sql_logins", "traffic.https_tls"} {
		if !ids[want] {
			t.Errorf("no check %s in the report", want)
		}
	}

	run := runChromium(t, "file://"+filepath.Join(out, "audit.html"), "--screenshot="+filepath.Join(artifactDir(t), "audit-demo.png"), "--window-size=1100,3000")
	if len(run.errors) > 0 {
		t.Errorf("the report logs console errors in Chromium:\n%s", strings.Join(run.errors, "\n"))
	}
	dom := runChromium(t, "file://"+filepath.Join(out, "audit.html"), "--dump-dom").stdout
	if !strings.Contains(dom, "Overall: <span class=\"verdict pass\">") {
		t.Errorf("the rendered report does not show the pass verdict")
	}
	t.Logf("screenshot: %s", filepath.Join(artifactDir(t), "audit-demo.png"))
}

// demoTraffic makes an HTTPS request and a SQL login through the demo.
func demoTraffic(t *testing.T, info demoInfo) {
	t.Helper()
	rootPEM, err := os.ReadFile(info.RootCA)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(info.HTTPSURL, "https://"), "/"))
	client := httpsClient(testpki.MustPoolOf(t, rootPEM), "localhost", net.JoinHostPort("127.0.0.1", port))
	resp, err := client.Get(info.HTTPSURL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	db := openMSSQL(t, mssqlDSNFor(info.SQLAddr, info.SQLUser, info.SQLPassword,
		map[string]string{"encrypt": "true", "certificate": info.RootCA, "hostNameInCertificate": "localhost"}))
	if err := db.PingContext(sqlCtx(t)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
}

// TestAuditFindings: a configuration with every kind of risk the audit is
// for fails with exit 3, each risk its own finding naming the key or the
// object: an upstream whose certificate is not verified, a certificate 5
// days from expiry, a SQL Server that does not force encryption, a direct
// unencrypted connection to it, a database without TDE.
func TestAuditFindings(t *testing.T) {
	t.Parallel()
	b := newSQLBackend(t, tdstest.Config{
		Encryption:  tdstest.EncryptOff, // Force Encryption = No
		Users:       map[string]string{sqlUser: sqlPassword, "auditor": "Aud1t-Pw!x"},
		Connections: []tdstest.ConnectionRow{{SessionID: 77, Encrypted: false, ClientNetAddress: "10.20.30.40"}},
		Databases:   []tdstest.DatabaseRow{{Name: "ehr", Encrypted: false}, {Name: "billing", Encrypted: true}},
	})
	registerSecret("Aud1t-Pw!x")
	// An operator certificate 5 days from expiry, issued a year ago.
	dir := t.TempDir()
	ca := newTestCA(t, "Audit Test CA")
	certPEM, keyPEM := ca.issueBetween(t, time.Now().Add(-360*24*time.Hour), time.Now().Add(5*24*time.Hour), sqlHost)
	certFile, keyFile := writeFile(t, dir, "sql.crt", certPEM), writeFile(t, dir, "sql.key", keyPEM)

	cfg := newSQLConfig(t, "required", b.srv.Addr(), "")
	cfg.Admin = gwAdmin{Listen: "127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t))}
	cfg.TLS = gwTLS{Issuer: "none", Certificates: []gwCert{{CertFile: certFile, KeyFile: keyFile}}}
	cfg.SQL[0].Upstream.CAFile = ""
	cfg.SQL[0].Upstream.InsecureSkipVerify = true
	cfg.SQL[0].Audit = &gwSQLAudit{User: "auditor", PasswordEnv: "GATEWAY_AUDIT_TEST_PW"}
	file := cfg.write(t)
	gw := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}})
	gw.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))

	res, r, _ := runAudit(t, file, []string{"GATEWAY_AUDIT_TEST_PW=Aud1t-Pw!x"}, "--trust", writeFile(t, dir, "ca.PEM", ca.PEM))
	if res.code != 3 || r.Verdict != "fail" {
		t.Fatalf("exit %d verdict %s, want 3 and fail\n%s", res.code, r.Verdict, res.stdout)
	}
	failed := map[string]string{}
	for _, c := range r.Checks {
		if c.Verdict == "fail" {
			failed[c.ID+" "+c.Subject] = c.Key + " | " + c.Finding + " | " + c.Fix
		}
	}
	want := []struct{ id, subject, mention *regexp.Regexp }{
		{regexp.MustCompile(`^upstream\.sql\.e2e-sql\.verification$`), regexp.MustCompile(`.`), regexp.MustCompile(`insecure_skip_verify`)},
		{regexp.MustCompile(`^sql\.e2e-sql\.certificate$`), regexp.MustCompile(sqlHost), regexp.MustCompile(`tls\.certificates`)},
		{regexp.MustCompile(`^upstream\.sql\.e2e-sql\.forces_encryption$`), regexp.MustCompile(`.`), regexp.MustCompile(`Force Encryption`)},
		{regexp.MustCompile(`^sql_server\.e2e-sql\.connections$`), regexp.MustCompile(`.`), regexp.MustCompile(`10\.20\.30\.40`)},
		{regexp.MustCompile(`^sql_server\.e2e-sql\.tde$`), regexp.MustCompile(`^ehr$`), regexp.MustCompile(`TDE|Transparent Data Encryption`)},
	}
	for _, w := range want {
		found := false
		for k, v := range failed {
			id, subject, _ := strings.Cut(k, " ")
			if w.id.MatchString(id) && w.subject.MatchString(subject) && w.mention.MatchString(v) {
				found = true
			}
		}
		if !found {
			t.Errorf("no failed check %s on %s mentioning %s; failed: %v", w.id, w.subject, w.mention, failed)
		}
	}
	if len(failed) != len(want) {
		t.Errorf("%d failed checks, want exactly the %d risks: %v", len(failed), len(want), failed)
	}
	for k := range failed {
		if strings.HasPrefix(k, "sql_server.e2e-sql.tde billing") {
			t.Error("the encrypted database billing was reported")
		}
	}
}

// TestStatusPageUnderLoad: the admin status page, loaded in Chromium while
// logins and requests run, shows them in its charts as they happen (the
// minute under way moves between two loads), logs no console error, and
// stays under 200 KB.
func TestStatusPageUnderLoad(t *testing.T) {
	t.Parallel()
	_, info := startDemo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		demoLoad(ctx, info)
	}()
	t.Cleanup(func() { cancel(); <-done })

	peak := regexp.MustCompile(`logged in, both legs TLS: (\d+)`)
	read := func() (int, int) {
		resp, err := http.Get(info.AdminURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) > 200<<10 {
			t.Fatalf("status page: %s, %d bytes", resp.Status, len(body))
		}
		dom := runChromium(t, info.AdminURL, "--dump-dom")
		if len(dom.errors) > 0 {
			t.Errorf("console errors:\n%s", strings.Join(dom.errors, "\n"))
		}
		m := peak.FindStringSubmatch(dom.stdout)
		if m == nil {
			t.Fatalf("no login legend in the rendered page")
		}
		n, _ := strconv.Atoi(m[1])
		return n, len(body)
	}
	var first int
	testkit.Eventually(t, 60*time.Second, "logins in the chart", func() error {
		if first, _ = read(); first == 0 {
			return fmt.Errorf("no login shown yet")
		}
		return nil
	})
	testkit.Eventually(t, 60*time.Second, "the chart to move", func() error {
		if n, _ := read(); n <= first {
			return fmt.Errorf("still %d logins shown", n)
		}
		return nil
	})
	runChromium(t, info.AdminURL, "--screenshot="+filepath.Join(artifactDir(t), "status-demo.png"), "--window-size=1100,1400")
}

// demoLoad logs in to the demo's SQL listener and fetches its page in a
// loop until ctx ends.
func demoLoad(ctx context.Context, info demoInfo) {
	rootPEM, _ := os.ReadFile(info.RootCA)
	_, port, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(info.HTTPSURL, "https://"), "/"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		},
	}}
	dsn := mssqlDSNFor(info.SQLAddr, info.SQLUser, info.SQLPassword,
		map[string]string{"encrypt": "true", "certificate": info.RootCA, "hostNameInCertificate": "localhost"})
	for ctx.Err() == nil {
		if db, err := sql.Open("sqlserver", dsn); err == nil {
			_ = db.PingContext(ctx)
			_ = db.Close()
		}
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, info.HTTPSURL, nil); err == nil {
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
