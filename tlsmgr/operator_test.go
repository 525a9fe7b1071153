package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

func noneConfig(certs ...configs.CertificateFile) configs.TLS {
	return configs.TLS{Issuer: configs.IssuerNone, MinVersion: "1.2", Certificates: certs}
}

func TestOperatorPEM(t *testing.T) {
	ca := newTestCA(t, "Operator Test CA")
	tests := []struct {
		name    string
		key     testpki.KeyType
		names   []string
		sni     string
		reverse bool // chain written CA first
	}{
		{"ec sec1 key", testpki.ECDSASEC1, []string{"op.test"}, "op.test", false},
		{"pkcs8 key", testpki.ECDSA, []string{"op.test"}, "op.test", false},
		{"rsa pkcs1 key", testpki.RSA, []string{"op.test"}, "op.test", false},
		{"chain with the leaf last", testpki.ECDSA, []string{"op.test"}, "op.test", true},
		{"ec key after EC PARAMETERS (openssl ecparam -genkey)", testpki.ECDSAWithParams, []string{"op.test"}, "op.test", false},
		{"wildcard", testpki.ECDSASEC1, []string{"*.wild.test"}, "a.wild.test", false},
		{"ip address", testpki.ECDSASEC1, []string{"127.0.0.1"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := ca.MustIssue(t, testpki.Options{Key: tc.key}, tc.names...)
			f := writePair(t, dir, "op", l)
			if tc.reverse {
				writeFile(t, f.CertFile, append(append([]byte{}, ca.PEM...), l.CertPEM...))
			}
			m := newManager(t, noneConfig(f), t.TempDir())
			name := tc.sni
			if name == "" {
				name = "127.0.0.1"
			}
			if err := m.Manage(context.Background(), []string{name}); err != nil {
				t.Fatalf("Manage: %v", err)
			}
			addr := serveTLS(t, m.ServerTLSConfig(name, "http/1.1"))
			cs, err := handshake(t, addr, &tls.Config{ServerName: name, RootCAs: testpki.MustPoolOf(t, ca.PEM)})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.PeerCertificates[0].SerialNumber.Cmp(l.Leaf.SerialNumber) != 0 {
				t.Error("served a different certificate")
			}
			info := m.Certificates()
			if len(info) != 1 || info[0].Issuer != IssuerOperator || info[0].Source != f.CertFile {
				t.Errorf("Certificates() = %+v", info)
			}
		})
	}
}

func TestOperatorCoverage(t *testing.T) {
	ca := newTestCA(t, "Operator Test CA")
	dir := t.TempDir()
	f := writePair(t, dir, "wild", ca.MustIssue(t, testpki.Options{}, "*.wild.test", "exact.test"))

	tests := []struct {
		name    string
		names   []string
		uncover string // "" if Manage must succeed, else the name the error names
	}{
		{"exact and wildcard", []string{"exact.test", "a.wild.test", "B.Wild.Test."}, ""},
		{"wildcard covers one label only", []string{"a.b.wild.test"}, "a.b.wild.test"},
		{"bare domain is not covered by its wildcard", []string{"wild.test"}, "wild.test"},
		{"ip address", []string{"10.0.0.1"}, "10.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, noneConfig(f), t.TempDir())
			err := m.Manage(context.Background(), tc.names)
			switch {
			case tc.uncover == "" && err != nil:
				t.Fatalf("Manage: %v", err)
			case tc.uncover != "" && (err == nil || !strings.Contains(err.Error(), tc.uncover)):
				t.Fatalf("Manage error %v, want one naming %s", err, tc.uncover)
			}
		})
	}
}

func TestOperatorPreferredOverIssuer(t *testing.T) {
	ca := newTestCA(t, "Operator Test CA")
	cfg := internalConfig()
	cfg.Certificates = []configs.CertificateFile{writePair(t, t.TempDir(), "op", ca.MustIssue(t, testpki.Options{}, "op.test"))}
	m := newManager(t, cfg, t.TempDir())
	if err := m.Manage(context.Background(), []string{"op.test", "int.test"}); err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := m.RootPEM()
	addr := serveTLS(t, m.ServerTLSConfig("op.test"))
	tests := []struct {
		sni   string
		roots []byte
	}{
		{"op.test", ca.PEM},
		{"int.test", rootPEM},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			if _, err := handshake(t, addr, &tls.Config{ServerName: tc.sni, RootCAs: testpki.MustPoolOf(t, tc.roots)}); err != nil {
				t.Fatal(err)
			}
		})
	}
	issuers := map[string]string{}
	for _, c := range m.Certificates() {
		issuers[c.Names[0]] = c.Issuer
	}
	if issuers["op.test"] != IssuerOperator || issuers["int.test"] != string(configs.IssuerInternal) {
		t.Errorf("Certificates() issuers = %v", issuers)
	}
}

func TestOperatorLoadErrors(t *testing.T) {
	ca := newTestCA(t, "Operator Test CA")
	dir := t.TempDir()
	a := ca.MustIssue(t, testpki.Options{}, "a.test")
	b := ca.MustIssue(t, testpki.Options{}, "b.test")
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n")
	tests := []struct {
		name string
		file configs.CertificateFile
	}{
		{"missing file", configs.CertificateFile{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: filepath.Join(dir, "nope.key")}},
		{"key of another certificate", configs.CertificateFile{
			CertFile: writeFile(t, filepath.Join(dir, "a.crt"), a.CertPEM),
			KeyFile:  writeFile(t, filepath.Join(dir, "b.key"), b.KeyPEM)}},
		{"no certificate", configs.CertificateFile{
			CertFile: writeFile(t, filepath.Join(dir, "empty.crt"), []byte("not pem")),
			KeyFile:  writeFile(t, filepath.Join(dir, "a.key"), a.KeyPEM)}},
		{"encrypted key", configs.CertificateFile{
			CertFile: filepath.Join(dir, "a.crt"),
			KeyFile:  writeFile(t, filepath.Join(dir, "enc.key"), encrypted)}},
		{"garbage pfx", configs.CertificateFile{PFXFile: writeFile(t, filepath.Join(dir, "x.pfx"), []byte("garbage"))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(noneConfig(tc.file), t.TempDir(), zaptest.NewLogger(t))
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), "tls.certificates[0]") || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the key and the file", err)
			}
		})
	}
}

// exportPFX runs openssl pkcs12 -export with extra arguments.
func exportPFX(t *testing.T, dir string, l *testpki.Cert, ca *testCA, password string, args ...string) string {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH; PFX tests need it to produce real-world PKCS#12 files")
	}
	certPath := writeFile(t, filepath.Join(dir, "leaf.pem"), l.CertPEM)
	keyPath := writeFile(t, filepath.Join(dir, "leaf.key"), l.KeyPEM)
	caPath := writeFile(t, filepath.Join(dir, "ca.PEM"), ca.PEM)
	out := filepath.Join(dir, "bundle.pfx")
	cmd := exec.Command(openssl, append([]string{"pkcs12", "-export",
		"-in", certPath, "-inkey", keyPath, "-certfile", caPath,
		"-out", out, "-passout", "pass:" + password}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("openssl pkcs12 %v unavailable: %v\n%s", args, err, b)
	}
	return out
}

func TestOperatorPFX(t *testing.T) {
	ca := newTestCA(t, "PFX Test CA")
	forms := []struct {
		name string
		args []string
	}{
		{"openssl 3 default (aes-256, pbkdf2)", nil},
		{"legacy (rc2, 3des, sha1 mac)", []string{"-legacy"}},
		{"explicit 3des", []string{"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"}},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			dir := t.TempDir()
			l := ca.MustIssue(t, testpki.Options{Key: testpki.ECDSA}, "sql.test")
			path := exportPFX(t, dir, l, ca, "s3cret!", form.args...)
			t.Setenv("TLSMGR_TEST_PFX_PASSWORD", "s3cret!")
			f := configs.CertificateFile{PFXFile: path, PFXPasswordEnv: "TLSMGR_TEST_PFX_PASSWORD"}

			m := newManager(t, noneConfig(f), t.TempDir())
			if err := m.Manage(context.Background(), []string{"sql.test"}); err != nil {
				t.Fatal(err)
			}
			addr := serveTLS(t, m.ServerTLSConfig("sql.test"))
			cs, err := handshake(t, addr, &tls.Config{ServerName: "sql.test", RootCAs: testpki.MustPoolOf(t, ca.PEM)})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if len(cs.PeerCertificates) != 2 {
				t.Errorf("served %d certificates, want the leaf and the CA from the PFX", len(cs.PeerCertificates))
			}

			t.Setenv("TLSMGR_TEST_PFX_PASSWORD", "wrong")
			_, err = New(noneConfig(f), t.TempDir(), zaptest.NewLogger(t))
			if !errors.Is(err, ErrIncorrectPassword) {
				t.Fatalf("wrong password: got %v, want ErrIncorrectPassword", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "TLSMGR_TEST_PFX_PASSWORD") {
				t.Errorf("error %q does not name the file and the variable", err)
			}
		})
	}
}

// TestOperatorReload drives Run with a short poll interval.
func TestOperatorReload(t *testing.T) {
	ca := newTestCA(t, "Reload Test CA")
	dir := t.TempDir()
	first := ca.MustIssue(t, testpki.Options{}, "op.test")
	f := writePair(t, dir, "op", first)
	core, logs := observer.New(zap.ErrorLevel)
	m, err := New(noneConfig(f), t.TempDir(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	m.pollInterval = 10 * time.Millisecond
	if err := m.Manage(context.Background(), []string{"op.test"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	addr := serveTLS(t, m.ServerTLSConfig("op.test"))
	client := &tls.Config{ServerName: "op.test", RootCAs: testpki.MustPoolOf(t, ca.PEM)}
	served := func() string {
		cs, err := handshake(t, addr, client)
		if err != nil {
			return "error: " + err.Error()
		}
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	if got := served(); got != first.Leaf.SerialNumber.String() {
		t.Fatalf("served %s, want the first certificate", got)
	}

	// Replaced on disk: the next handshakes see the new certificate.
	second := ca.MustIssue(t, testpki.Options{Key: testpki.RSA}, "op.test")
	writePair(t, dir, "op", second)
	testkit.EventuallyTrue(t, "the new certificate", func() bool { return served() == second.Leaf.SerialNumber.String() })

	// A broken file keeps the last good certificate and logs one error.
	writeFile(t, f.CertFile, []byte("truncated"))
	testkit.EventuallyTrue(t, "the reload error", func() bool {
		return logs.FilterMessage("operator certificate reload failed; keeping the previous one").Len() > 0
	})
	if got := served(); got != second.Leaf.SerialNumber.String() {
		t.Errorf("after a bad file served %s, want the previous certificate", got)
	}
	if err := m.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), f.CertFile) {
		t.Errorf("Reload = %v, want an error naming %s", err, f.CertFile)
	}
}

func TestOperatorExpiryWarning(t *testing.T) {
	ca := newTestCA(t, "Expiry Test CA")
	tests := []struct {
		name     string
		notAfter time.Duration
		level    zap.AtomicLevel
		message  string
	}{
		{"expires in 10 days", 10 * 24 * time.Hour, zap.NewAtomicLevelAt(zap.WarnLevel), "operator certificate expires soon"},
		{"expired", -time.Minute, zap.NewAtomicLevelAt(zap.ErrorLevel), "operator certificate expired"},
		{"expires in 60 days", 60 * 24 * time.Hour, zap.NewAtomicLevelAt(zap.WarnLevel), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := writePair(t, t.TempDir(), "op", ca.MustIssue(t, testpki.Options{NotAfter: time.Now().Add(tc.notAfter)}, "op.test"))
			core, logs := observer.New(tc.level)
			m, err := New(noneConfig(f), t.TempDir(), zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got := logs.FilterMessage(tc.message).Len()
			if tc.message == "" {
				if logs.Len() != 0 {
					t.Errorf("unexpected logs: %v", logs.All())
				}
				return
			}
			if got != 1 {
				t.Errorf("%q logged %d times at load, want 1", tc.message, got)
			}
		})
	}
}

func TestOperatorExpiryWarnedDaily(t *testing.T) {
	ca := newTestCA(t, "Expiry Test CA")
	f := writePair(t, t.TempDir(), "op", ca.MustIssue(t, testpki.Options{NotAfter: time.Now().Add(5 * 24 * time.Hour)}, "op.test"))
	core, logs := observer.New(zap.WarnLevel)
	m, err := New(noneConfig(f), t.TempDir(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.expiryInterval = 5 * time.Millisecond // "daily"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	testkit.EventuallyTrue(t, "repeated expiry warnings", func() bool {
		return logs.FilterMessage("operator certificate expires soon").Len() >= 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestOperatorNoLongerCovers replaces an operator certificate with one for
// other names: the name it stops covering is obtained from the issuer.
func TestOperatorNoLongerCovers(t *testing.T) {
	ca := newTestCA(t, "Operator Test CA")
	dir := t.TempDir()
	cfg := internalConfig()
	cfg.Certificates = []configs.CertificateFile{writePair(t, dir, "op", ca.MustIssue(t, testpki.Options{}, "op.test"))}
	m := newManager(t, cfg, t.TempDir())
	if err := m.Manage(context.Background(), []string{"op.test"}); err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := m.RootPEM()
	addr := serveTLS(t, m.ServerTLSConfig("op.test"))

	writePair(t, dir, "op", ca.MustIssue(t, testpki.Options{}, "elsewhere.test"))
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	internal := &tls.Config{ServerName: "op.test", RootCAs: testpki.MustPoolOf(t, rootPEM)}
	testkit.EventuallyTrue(t, "op.test from the internal CA", func() bool {
		_, err := handshake(t, addr, internal)
		return err == nil
	})
}
