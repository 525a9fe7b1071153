package test

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

// servedLeaf handshakes with the gateway for serverName and returns the leaf
// certificate it presented, verified against roots.
func servedLeaf(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	state, err := handshake(addr, serverName, roots)
	if err != nil {
		return nil, err
	}
	return state.PeerCertificates[0], nil
}

// expectLeaf fails the test unless the gateway presents want for serverName.
func expectLeaf(t *testing.T, addr, serverName string, roots *x509.CertPool, want *x509.Certificate) {
	t.Helper()
	got, err := servedLeaf(addr, serverName, roots)
	if err != nil {
		t.Fatalf("handshake for %s: %v", serverName, err)
	}
	if !got.Equal(want) {
		t.Fatalf("%s: served certificate serial %x, want the operator's %x", serverName, got.SerialNumber, want.SerialNumber)
	}
}

// TestOperatorPEM serves an operator PEM pair beside the internal CA, then
// replaces the files on disk and expects the next handshake to see the new
// certificate without a restart.
func TestOperatorPEM(t *testing.T) {
	t.Parallel()
	backend := newEchoBackend(t, nil)
	ca := newTestCA(t, "Operator Test CA")
	opRoots := testpki.MustPoolOf(t, ca.PEM)
	certDir := t.TempDir()
	certPEM, keyPEM, leaf := ca.issue(t, "op.test")
	certFile := writeFile(t, certDir, "app.crt", certPEM)
	keyFile := writeFile(t, certDir, "app.key", keyPEM)

	cfg := newConfig(t, backend.URL, "op.test", "internal.test")
	cfg.TLS.Certificates = []gwCert{{CertFile: certFile, KeyFile: keyFile}}
	file := cfg.write(t)
	internalRoots := testpki.MustPoolOf(t, exportRoot(t, file))
	g := startGateway(t, file)
	// The leaf is valid for a day: within the 30 days that earn a warning.
	g.waitLog(t, 10*time.Second, "a warning that "+certFile+" expires soon", func(line string, e logEntry) bool {
		return e.str("level") == "warn" && strings.Contains(line, certFile)
	})

	expectLeaf(t, g.httpsAddr, "op.test", opRoots, leaf)
	getEcho(t, httpsClient(opRoots, "op.test", g.httpsAddr), httpsURL("op.test", g.httpsAddr, "/"), "op.test")
	// The name the operator's certificate does not cover comes from the issuer.
	if _, err := servedLeaf(g.httpsAddr, "internal.test", internalRoots); err != nil {
		t.Fatalf("internal.test with the internal root: %v", err)
	}

	// A broken file is an error to log, not a reason to stop serving: the
	// certificate loaded last stays in use until a good one replaces it.
	t.Run("broken_file_keeps_old_certificate", func(t *testing.T) {
		mark := g.mark()
		writeFile(t, certDir, "app.crt", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
		g.waitLogAfter(t, mark, 30*time.Second, "an error naming "+certFile, func(line string, e logEntry) bool {
			return e.str("level") == "error" && strings.Contains(line, certFile)
		})
		expectLeaf(t, g.httpsAddr, "op.test", opRoots, leaf)
		if g.exited() {
			t.Fatalf("gateway exited (%v) on a broken certificate file", g.state)
		}
	})

	replacements := []struct {
		name    string
		replace func(t *testing.T, certPEM, keyPEM []byte)
	}{
		{"overwritten_in_place", func(t *testing.T, certPEM, keyPEM []byte) {
			writeFile(t, certDir, "app.key", keyPEM)
			writeFile(t, certDir, "app.crt", certPEM)
		}},
		{"renamed_into_place", func(t *testing.T, certPEM, keyPEM []byte) {
			// As configuration management tools do: write beside, then rename.
			tmpKey := writeFile(t, certDir, ".app.key.new", keyPEM)
			tmpCert := writeFile(t, certDir, ".app.crt.new", certPEM)
			if err := os.Rename(tmpKey, keyFile); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmpCert, certFile); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, r := range replacements {
		t.Run(r.name, func(t *testing.T) {
			certPEM, keyPEM, next := ca.issue(t, "op.test")
			r.replace(t, certPEM, keyPEM)
			testkit.Eventually(t, 30*time.Second, "new certificate served", func() error {
				got, err := servedLeaf(g.httpsAddr, "op.test", opRoots)
				if err != nil {
					return err
				}
				if !got.Equal(next) {
					return fmt.Errorf("still serving serial %x, want %x", got.SerialNumber, next.SerialNumber)
				}
				return nil
			})
			if g.exited() {
				t.Fatalf("gateway exited (%v) after the certificate files changed", g.state)
			}
		})
	}
}

// pfxForms are the PKCS#12 encodings an operator brings: OpenSSL 3's
// default, and the 3DES/SHA-1 form older Windows and OpenSSL 1.x produce.
var pfxForms = []struct {
	name string
	args []string
}{
	{"modern_aes256_pbkdf2", nil},
	{"legacy_flag", []string{"-legacy"}}, // RC2-40 certificates, 3DES key
	{"legacy_3des", []string{"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"}},
}

// makePFX bundles a PEM pair and its CA into dir/name with openssl.
func makePFX(t *testing.T, dir, name, password string, certPEM, keyPEM, caPEM []byte, extra []string) (string, error) {
	t.Helper()
	cert := writeFile(t, dir, name+".crt", certPEM)
	key := writeFile(t, dir, name+".key", keyPEM)
	chain := writeFile(t, dir, name+".ca", caPEM)
	out := filepath.Join(dir, name)
	args := append([]string{"pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile", chain,
		"-name", "gateway e2e", "-out", out, "-passout", "env:E2E_OPENSSL_PASS"}, extra...)
	cmd := exec.Command("openssl", args...)
	cmd.Env = append(os.Environ(), "E2E_OPENSSL_PASS="+password)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// TestOperatorPFX serves PFX bundles in each form with tls.issuer none, the
// password taken from the environment variable the config names; a wrong
// password makes check and run exit 1 naming the file.
func TestOperatorPFX(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found: install the Debian package openssl")
	}
	backend := newEchoBackend(t, nil)
	ca := newTestCA(t, "Operator PFX CA")
	roots := testpki.MustPoolOf(t, ca.PEM)
	const passwordEnv = "E2E_PFX_PASSWORD"
	const password = "correct horse battery staple"
	registerSecret(password) // log hygiene: proof_secrets_test.go

	for _, form := range pfxForms {
		t.Run(form.name, func(t *testing.T) {
			t.Parallel()
			certPEM, keyPEM, leaf := ca.issue(t, "pfx.test")
			pfx, err := makePFX(t, t.TempDir(), "site.pfx", password, certPEM, keyPEM, ca.PEM, form.args)
			if err != nil {
				if len(form.args) > 0 && form.args[0] == "-legacy" {
					t.Skipf("this openssl cannot write the legacy form (legacy provider missing?): %v", err)
				}
				t.Fatal(err)
			}
			cfg := newConfig(t, backend.URL, "pfx.test")
			cfg.TLS.Issuer = "none"
			cfg.TLS.Certificates = []gwCert{{PFXFile: pfx, PFXPasswordEnv: passwordEnv}}
			file := cfg.write(t)
			good := []string{passwordEnv + "=" + password}
			bad := []string{passwordEnv + "=wrong password"}

			if res := runCLI(t, good, "check", "--config", file); res.code != 0 || !strings.Contains(res.stdout, "pfx.test") {
				t.Errorf("gateway check with the right password: want exit 0 and pfx.test reported; got %s", res)
			}
			for _, cmd := range []string{"check", "run"} {
				res := runCLI(t, bad, cmd, "--config", file)
				if res.code != 1 || !strings.Contains(res.stdout+res.stderr, filepath.Base(pfx)) {
					t.Errorf("gateway %s with a wrong password: want exit 1 and an error naming %s; got %s", cmd, filepath.Base(pfx), res)
				}
			}

			g := startGateway(t, file, good...)
			expectLeaf(t, g.httpsAddr, "pfx.test", roots, leaf)
			getEcho(t, httpsClient(roots, "pfx.test", g.httpsAddr), httpsURL("pfx.test", g.httpsAddr, "/"), "pfx.test")
			g.stop(t)
		})
	}
}
