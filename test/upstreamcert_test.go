package test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestUpstreamCertificatesFromInternalCA: `gateway ca issue` writes PFX
// files for a SQL Server and an IIS server before the gateway ever ran;
// OpenSSL reads them as an independent PKCS#12 reader; the SQL Server
// double and the IIS double serve them; and the gateway, whose internal CA
// is the same one (same storage), verifies both upstreams with ca_file set
// to the internal root — no pin, no insecure_skip_verify. gateway check
// then warns about the certificate that expires within 30 days.
func TestUpstreamCertificatesFromInternalCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	const pw = "Upstream-PFX-Pa55!"
	registerSecret(pw) // log hygiene: proof_secrets_test.go
	env := []string{"E2E_PFX_PASSWORD=" + pw}

	// Only storage and tls matter to `ca issue`: the gateway's own
	// configuration, written later, shares them.
	caConfig := writeFile(t, dir, "ca.yaml", []byte(`{"storage": "`+storage+`", "admin": {"listen": ""}, "http": {"listen": "", "redirect_listen": ""}}`))
	sqlPFX, iisPFX, rootFile := filepath.Join(dir, "sql01.pfx"), filepath.Join(dir, "iis01.pfx"), filepath.Join(dir, "internal-root.pem")
	if res := runCLI(t, env, "ca", "issue", sqlHost, "127.0.0.1", "--config", caConfig, "--out", sqlPFX,
		"--password-env", "E2E_PFX_PASSWORD", "--days", "20", "--root-out", rootFile); res.code != 0 || !strings.Contains(res.stdout, "wrote "+sqlPFX) {
		t.Fatalf("gateway ca issue for SQL Server: %s", res)
	}
	if res := runCLI(t, env, "ca", "issue", "iis01.corp.local", "--config", caConfig, "--out", iisPFX,
		"--password-env", "E2E_PFX_PASSWORD", "--aes"); res.code != 0 {
		t.Fatalf("gateway ca issue for IIS: %s", res)
	}
	if res := runCLI(t, nil, "ca", "issue", "x.test", "--config", caConfig, "--out", filepath.Join(dir, "x.pfx")); res.code != 2 {
		t.Errorf("ca issue without --password-env: %s, want exit 2", res)
	}
	if st, err := os.Stat(sqlPFX); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("PFX file mode: %v %v, want 0600", st.Mode(), err)
	}

	// OpenSSL, an independent reader: the MAC verifies with the password
	// and not without it, and the file holds the leaf and its chain.
	if _, err := exec.LookPath("openssl"); err != nil {
		requireClient(t, err, "openssl")
	}
	for file, wantAlg := range map[string]string{sqlPFX: "pbeWithSHA1And3-KeyTripleDES-CBC", iisPFX: "PBES2"} {
		cmd := exec.Command("openssl", "pkcs12", "-info", "-in", file, "-passin", "env:E2E_PFX_PASSWORD", "-nokeys")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl pkcs12 -info %s: %v\n%s", file, err, out)
		}
		if n := strings.Count(string(out), "Certificate bag"); n != 3 || !strings.Contains(string(out), wantAlg) {
			t.Errorf("openssl pkcs12 -info %s: %d certificate bags (want leaf, intermediate, root), encryption %s expected:\n%s", file, n, wantAlg, out)
		}
		bad := exec.Command("openssl", "pkcs12", "-in", file, "-passin", "pass:wrong", "-noout")
		if out, err := bad.CombinedOutput(); err == nil {
			t.Errorf("openssl accepted %s with a wrong password:\n%s", file, out)
		}
	}

	// The doubles serve the issued certificates.
	backend := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: loadPFX(t, sqlPFX, pw)})
	iisCert := loadPFX(t, iisPFX, pw)
	iis := newIISDouble(t, "iis01", "NTLM", iisCert)

	cfg := newSQLConfig(t, "required", backend.srv.Addr(), rootFile)
	cfg.Storage = storage
	cfg.HTTP = gwHTTP{Listen: "127.0.0.1:0", Sites: []gwSite{{
		Hosts: []string{"app.test"}, Upstreams: []string{iis.url},
		UpstreamTLS: &gwUpstreamTLS{CAFile: rootFile, ServerName: "iis01.corp.local"},
	}}}
	file := cfg.write(t)
	root, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if exported := exportRoot(t, file); !bytes.Equal(exported, root) {
		t.Fatal("gateway ca root exports another root than the one ca issue signed under: the gateway would run a second CA")
	}
	p := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}})
	ready := p.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))
	roots := testpki.MustPoolOf(t, root)

	db := openMSSQL(t, mssqlDSN(ready.str("sql_addr"), verifiedParams("true", rootFile)))
	if err := mssqlQueries(sqlCtx(t), db); err != nil {
		t.Errorf("SQL through the gateway to the upstream serving the issued certificate: %v", err)
	}
	_ = db.Close() // ends the session, which upstreamFull waits for
	if rec := backend.upstreamFull(t); rec.User != sqlUser {
		t.Errorf("the double saw user %q", rec.User)
	}
	resp, e := getIIS(t, httpsClient(roots, "app.test", ready.str("https_addr")), httpsURL("app.test", ready.str("https_addr"), "/"))
	if resp.StatusCode != http.StatusOK || e.Server != "iis01" {
		t.Errorf("HTTPS through the gateway to IIS serving the issued certificate: %d %+v", resp.StatusCode, e)
	}
	p.signal(t, os.Interrupt)
	p.waitExit(t, 30*time.Second)

	res := runCLI(t, nil, "check", "--config", file)
	if res.code != 0 || !strings.Contains(res.stdout, "WARNING upstream certificate "+sqlHost+", 127.0.0.1 ("+sqlPFX+") expires on") ||
		!strings.Contains(res.stdout, "upstream certificate iis01.corp.local ("+iisPFX+") from the internal CA: expires") {
		t.Errorf("gateway check does not warn about the SQL Server certificate only:\n%s", res)
	}
}

// loadPFX decodes a PFX file as a server would import it.
func loadPFX(t *testing.T, file, password string) *tls.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		t.Fatalf("decoding %s: %v", file, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}
