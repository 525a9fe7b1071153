package test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TLS posture of both listeners, graded by testssl.sh and sslscan. The SQL
// listener is graded in strict mode: TDS 8 is TLS first, so the tools can
// speak to it directly (they send no ALPN; see TestProofSQLTLSPosture for
// what the listener does with and without tds/8.0).

// testsslNoise are testssl findings of MEDIUM or above that are expected
// on a test run and say nothing about the gateway's TLS configuration.
var testsslNoise = map[string]string{
	"engine_problem": "WARN, not a finding: Debian's openssl has no GOST engine; testssl reports that about itself",
	"cert_revocation": "the internal CA issues leaves without CRL or OCSP URLs: revocation is not how " +
		"a 7-day internal leaf is retired (it expires); operator and ACME certificates carry their own",
	"cert_expirationStatus": "internal CA leaves live leaf_lifetime (168h by default) and certmagic renews them " +
		"automatically before expiry; testssl calls anything under 30 days HIGH",
	"cert_notAfter": "same as cert_expirationStatus: the 7-day internal leaf by design",
}

// testsslFinding is one entry of testssl's --jsonfile output.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

var testsslSeverity = map[string]int{"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

// runTestssl grades target (host:port, the host only naming the server:
// the connection goes to 127.0.0.1) and returns its findings.
func runTestssl(t *testing.T, bin, target, rootFile string) []testsslFinding {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none",
		"--ip", "127.0.0.1", "--add-ca", rootFile, "--jsonfile", out, target)
	cmd.Env = append(os.Environ(), "TERM=dumb")
	output, err := cmd.CombinedOutput()
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl %s wrote no JSON (%v; exit %v):\n%s", target, rerr, err, output)
	}
	var findings []testsslFinding
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("testssl JSON: %v\n%s", err, data)
	}
	if len(findings) < 20 {
		t.Fatalf("testssl %s reported only %d findings: it did not reach the listener?\n%s", target, len(findings), output)
	}
	return findings
}

// gradeTestssl applies the posture policy to testssl's findings: no finding
// of MEDIUM or above except documented noise, no SSLv2/3 or TLS 1.0/1.1,
// only ECDHE with AEAD suites, and (for HTTPS) an HSTS header of at least
// 180 days. It returns what breaks the policy, the noise found and the TLS
// versions offered.
func gradeTestssl(findings []testsslFinding, https bool) (problems, noise, protocols []string) {
	byID := map[string]testsslFinding{}
	for _, f := range findings {
		byID[f.ID] = f
		if testsslSeverity[f.Severity] < 2 {
			continue
		}
		if _, ok := testsslNoise[f.ID]; ok {
			noise = append(noise, f.ID)
			continue
		}
		problems = append(problems, fmt.Sprintf("%s %s: %s", f.Severity, f.ID, f.Finding))
	}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		f, ok := byID[id]
		if !ok || !strings.HasPrefix(f.Finding, "not offered") {
			problems = append(problems, fmt.Sprintf("%s: %q, want not offered", id, f.Finding))
		}
	}
	for _, id := range []string{"TLS1_2", "TLS1_3"} {
		if f, ok := byID[id]; ok && strings.HasPrefix(f.Finding, "offered") {
			protocols = append(protocols, strings.ReplaceAll(strings.TrimPrefix(id, "TLS"), "_", "."))
		}
	}
	// Cipher categories (testssl's default run): only "STRONG" (AEAD)
	// may be offered; AVERAGE is CBC, the others worse.
	for _, id := range []string{"cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"} {
		if f, ok := byID[id]; !ok || !strings.HasPrefix(f.Finding, "not offered") {
			problems = append(problems, fmt.Sprintf("%s: %q, want not offered", id, f.Finding))
		}
	}
	// Forward-secret suites as testssl lists them, and each suite when run
	// with --cipher-per-proto ("cipher-tls1_2_xc02c"): ECDHE with AEAD.
	for _, f := range findings {
		var suites []string
		switch {
		case f.ID == "PFS_ciphers" || f.ID == "FS_ciphers":
			suites = strings.Fields(f.Finding)
		case strings.HasPrefix(f.ID, "cipher-tls"):
			if fields := strings.Fields(f.Finding); len(fields) > 3 {
				suites = fields[3:4] // "TLS 1.2 xc02c ECDHE-ECDSA-AES256-GCM-SHA384 ..."
			}
		}
		for _, suite := range suites {
			if !strings.Contains(suite, "GCM") && !strings.Contains(suite, "CHACHA20") {
				problems = append(problems, "suite not AEAD: "+suite)
			}
		}
	}
	if f, ok := byID["PFS"]; ok && !strings.HasPrefix(f.Finding, "offered") {
		problems = append(problems, "forward secrecy: "+f.Finding)
	}
	if https {
		// testssl reports a present header as HSTS_time (OK when at least
		// 180 days) and a missing one as HSTS "not offered".
		if f, ok := byID["HSTS"]; ok {
			problems = append(problems, fmt.Sprintf("HSTS %s: %s", f.Severity, f.Finding))
		}
		if f, ok := byID["HSTS_time"]; !ok || f.Severity != "OK" {
			problems = append(problems, fmt.Sprintf("HSTS_time %+v, want OK (max-age of at least 180 days)", f))
		}
	}
	slices.Sort(noise)
	return problems, slices.Compact(noise), protocols
}

// sslscanGrade runs sslscan against addr with SNI name and returns the
// number of suites it accepted and what breaks the policy: a protocol
// other than TLS 1.2/1.3, or a suite that is not forward secret and AEAD.
func sslscanGrade(t *testing.T, addr, name string) (accepted int, problems []string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sslscan.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sslscan", "--no-colour", "--sni-name="+name, "--xml="+out, addr)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sslscan: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep sslscanReport
	if err := xml.Unmarshal(data, &rep); err != nil || len(rep.Tests) != 1 {
		t.Fatalf("sslscan XML (%v):\n%s", err, data)
	}
	for _, p := range rep.Tests[0].Protocols {
		name := p.Type + " " + p.Version
		if p.Enabled == "1" && name != "tls 1.2" && name != "tls 1.3" {
			problems = append(problems, strings.ToUpper(name)+" enabled")
		}
	}
	for _, c := range rep.Tests[0].Ciphers {
		if c.Status != "accepted" && c.Status != "preferred" {
			continue
		}
		accepted++
		if !strongSuite(c.SSLVersion, c.Cipher) {
			problems = append(problems, c.SSLVersion+" accepts "+c.Cipher)
		}
	}
	if accepted == 0 {
		t.Fatalf("sslscan found no accepted suite on %s:\n%s", addr, data)
	}
	return accepted, problems
}

// proofGradedGateway is a gateway with an HTTPS site app.test (HSTS one
// year) and a strict SQL listener for proofSQLHost, in front of a strict
// double.
func proofGradedGateway(t *testing.T) *proofGateway {
	t.Helper()
	web := newProofBackend(t)
	// The application's own security headers (IIS sets them in
	// web.config); the gateway must pass them through for testssl to see.
	web.setHeaders(map[string]string{
		"X-Frame-Options":         "SAMEORIGIN",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'self'",
		"Referrer-Policy":         "same-origin",
	})
	backend := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptStrict})
	cfg := newProofSQLConfig(t, "strict", backend.addr(), backend.caFile)
	cfg.SQL[0].Upstream.Encryption = "strict"
	cfg.HTTP = gwHTTP{Listen: "127.0.0.1:0", Sites: []gwSite{{Hosts: []string{"app.test"}, Upstreams: []string{web.URL}, HSTSMaxAge: "8760h"}}}
	return startProofGateway(t, cfg)
}

// TestProofSQLTLSPosture is the fast part of the SQL listener's grade
// (sslscan takes a fraction of a second) and pins down its ALPN behaviour:
// a TLS-first client without ALPN still gets TLS (and must then speak
// PRELOGIN inside it: the listener tells TDS 8 from TDS 7.x by the first
// byte, 0x16), a client offering only another protocol (h2) is refused
// with no_application_protocol, and tds/8.0 is negotiated when offered.
func TestProofSQLTLSPosture(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "TLS posture of the SQL listener (sslscan, ALPN)")
	if _, err := exec.LookPath("sslscan"); err != nil {
		t.Skip("sslscan not found: install the Debian package sslscan")
	}
	g := proofGradedGateway(t)
	httpsSuites, problems := sslscanGrade(t, g.httpsAddr, "app.test")
	sqlSuites, sqlProblems := sslscanGrade(t, g.sqlAddr, proofSQLHost)
	for _, p := range append(problems, sqlProblems...) {
		t.Errorf("sslscan: %s", p)
	}

	roots := testpki.MustPoolOf(t, g.rootPEM)
	dial := func(protos ...string) (*tls.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
			Config: &tls.Config{RootCAs: roots, ServerName: proofSQLHost, NextProtos: protos}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", g.sqlAddr)
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	}
	c, err := dial()
	if err != nil {
		t.Fatalf("TLS-first without ALPN: %v", err)
	}
	noALPN := c.ConnectionState()
	// Without ALPN the listener still expects PRELOGIN inside TLS.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(proofPrelogin(t, tds.EncryptOn)); err != nil {
		t.Fatal(err)
	}
	if a := proofReadPreloginAnswer(t, c); a.Encryption == nil {
		t.Errorf("PRELOGIN answer without ENCRYPTION: %v", a)
	}
	c.Close()
	if _, err := dial("h2", "http/1.1"); err == nil {
		t.Error("TLS-first offering only h2 and http/1.1 was accepted; want no_application_protocol")
	}
	c, err = dial("tds/8.0")
	if err != nil {
		t.Fatalf("TLS-first with ALPN tds/8.0: %v", err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "tds/8.0" {
		t.Errorf("negotiated %q, want tds/8.0", p)
	}
	c.Close()
	row.set("SQL strict: %d suites, all ECDHE+AEAD, %s without ALPN (PRELOGIN inside TLS still required), h2-only ALPN refused, tds/8.0 negotiated; HTTPS: %d suites",
		sqlSuites, tls.VersionName(noALPN.Version), httpsSuites)
}

// TestVerifyTLSGrade runs testssl.sh against the HTTPS listener and the
// strict SQL listener (make verify: a few minutes).
func TestVerifyTLSGrade(t *testing.T) {
	proofLong(t)
	t.Parallel()
	bin := proofTool(t, "testssl", "the Debian package testssl.sh")
	g := proofGradedGateway(t)
	targets := []struct {
		check, target, name, addr string
		https                     bool
	}{
		{"TLS grade HTTPS listener (testssl + sslscan)", "https://app.test:" + proofPort(g.httpsAddr), "app.test", g.httpsAddr, true},
		{"TLS grade SQL strict listener (testssl + sslscan)", proofSQLHost + ":" + proofPort(g.sqlAddr), proofSQLHost, g.sqlAddr, false},
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			row := proofRow(t, tc.check)
			findings := runTestssl(t, bin, tc.target, g.rootFile)
			problems, noise, protocols := gradeTestssl(findings, tc.https)
			suites, scanProblems := sslscanGrade(t, tc.addr, tc.name)
			for _, p := range append(problems, scanProblems...) {
				t.Errorf("%s", p)
			}
			for _, id := range noise {
				t.Logf("noise %s: %s", id, testsslNoise[id])
			}
			row.set("testssl: %d findings, %d ≥MEDIUM beyond noise, noise %v; TLS %s only; sslscan: %d suites, %d not ECDHE+AEAD",
				len(findings), len(problems), noise, strings.Join(protocols, "+"), suites, len(scanProblems))
		})
	}
}

func proofPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprint(addr)
	}
	return port
}

// TestProofTLSGraderControl is the graders' negative control: testssl
// findings of a weak server, and sslscan against a weak server (TLS 1.0,
// a CBC suite), are reported as problems.
func TestProofTLSGraderControl(t *testing.T) {
	t.Parallel()
	weak := []testsslFinding{
		{ID: "SSLv2", Severity: "OK", Finding: "not offered"}, {ID: "SSLv3", Severity: "OK", Finding: "not offered"},
		{ID: "TLS1", Severity: "LOW", Finding: "offered (deprecated)"}, {ID: "TLS1_1", Severity: "INFO", Finding: "not offered"},
		{ID: "TLS1_2", Severity: "OK", Finding: "offered"},
		{ID: "cipherlist_NULL", Finding: "not offered"}, {ID: "cipherlist_aNULL", Finding: "not offered"},
		{ID: "cipherlist_EXPORT", Finding: "not offered"}, {ID: "cipherlist_LOW", Finding: "not offered"},
		{ID: "cipherlist_3DES_IDEA", Finding: "not offered"}, {ID: "cipherlist_AVERAGE", Severity: "LOW", Finding: "offered"},
		{ID: "PFS_ciphers", Severity: "INFO", Finding: "TLS_AES_128_GCM_SHA256 ECDHE-RSA-AES128-SHA"},
		{ID: "HSTS", Severity: "LOW", Finding: "not offered"},
		{ID: "BEAST", Severity: "MEDIUM", Finding: "VULNERABLE"},
		{ID: "cert_revocation", Severity: "HIGH", Finding: "Neither CRL nor OCSP URI provided"},
	}
	problems, noise, _ := gradeTestssl(weak, true)
	for _, want := range []string{"TLS1:", "cipherlist_AVERAGE", "ECDHE-RSA-AES128-SHA", "HSTS ", "HSTS_time", "BEAST"} {
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("weak testssl findings: %q not reported; problems %q", want, problems)
		}
	}
	if len(problems) != 6 || len(noise) != 1 {
		t.Errorf("weak testssl findings: problems %q, noise %q; want 6 problems and 1 noise", problems, noise)
	}
	if _, err := exec.LookPath("sslscan"); err != nil {
		t.Skip("sslscan not found: install the Debian package sslscan")
	}
	cert, _, err := tdstest.NewCertificate("weak.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS10,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	if _, problems := sslscanGrade(t, ln.Addr().String(), "weak.test"); len(problems) < 2 {
		t.Errorf("sslscan on a TLS 1.0 + CBC server: problems %q; want TLS 1.0 and the CBC suite reported", problems)
	}
}
