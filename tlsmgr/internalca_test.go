package tlsmgr

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/gateway-project/gateway/internal/testpki"
	"go.uber.org/zap/zaptest"
)

func TestInternalHandshake(t *testing.T) {
	m := newManager(t, internalConfig(), t.TempDir())
	if err := m.Manage(context.Background(), []string{"app.test", "127.0.0.1"}); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	rootPEM, err := m.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := testpki.MustPoolOf(t, rootPEM)
	addr := serveTLS(t, m.ServerTLSConfig("app.test", "h2", "http/1.1"))

	// A manager without an IP certificate, for the empty-SNI fallback.
	m2 := newManager(t, internalConfig(), t.TempDir())
	if err := m2.Manage(context.Background(), []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	root2, _ := m2.RootPEM()
	addr2 := serveTLS(t, m2.ServerTLSConfig("app.test"))

	tests := []struct {
		name   string
		addr   string
		client *tls.Config
		want   string // a name the served leaf must be valid for
	}{
		{"sni", addr, &tls.Config{ServerName: "app.test", RootCAs: roots}, "app.test"},
		{"sni upper case", addr, &tls.Config{ServerName: "APP.test", RootCAs: roots}, "app.test"},
		{"ip address, no sni", addr, &tls.Config{ServerName: "127.0.0.1", RootCAs: roots}, "127.0.0.1"},
		{"unknown sni gets the default name", addr, verifyFor(roots, "other.test", "app.test"), "app.test"},
		{"no sni, no ip certificate: default name", addr2, verifyFor(testpki.MustPoolOf(t, root2), "", "app.test"), "app.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := handshake(t, tc.addr, tc.client)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if err := cs.PeerCertificates[0].VerifyHostname(tc.want); err != nil {
				t.Errorf("served leaf: %v", err)
			}
			if len(cs.PeerCertificates) != 2 {
				t.Fatalf("chain has %d certificates, want leaf and intermediate", len(cs.PeerCertificates))
			}
			if got := cs.PeerCertificates[1].Subject.CommonName; got != "Test Gateway CA Intermediate" {
				t.Errorf("chain[1] = %q, want the intermediate", got)
			}
		})
	}
}

func TestInternalRootSurvivesRestart(t *testing.T) {
	storage := t.TempDir()
	ctx := context.Background()
	m1, err := New(internalConfig(), storage, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Manage(ctx, []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	root1, _ := m1.RootPEM()
	leaf1 := m1.Certificates()[0].SHA256
	m1.Close()

	m2 := newManager(t, internalConfig(), storage)
	if err := m2.Manage(ctx, []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	root2, err := m2.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root1, root2) {
		t.Error("root changed across restart")
	}
	if got := m2.Certificates()[0].SHA256; got != leaf1 {
		t.Errorf("leaf reissued across restart: %s, want %s from storage", got, leaf1)
	}
}

func TestInternalCertificate(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		clamped  bool // NotAfter is the intermediate's
	}{
		{"short lifetime", 2 * time.Hour, false},
		{"default lifetime", 168 * time.Hour, false},
		{"longer than the intermediate", 398 * 24 * time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := internalConfig()
			cfg.Internal.LeafLifetime = tc.lifetime
			m := newManager(t, cfg, t.TempDir())
			start := time.Now()
			if err := m.Manage(context.Background(), []string{"app.test", "::1"}); err != nil {
				t.Fatal(err)
			}
			certs := m.cache.AllMatchingCertificates("app.test")
			if len(certs) != 1 {
				t.Fatalf("%d certificates for app.test, want 1", len(certs))
			}
			chain := certs[0].Certificate.Certificate
			leaf, _ := x509.ParseCertificate(chain[0])
			inter, _ := x509.ParseCertificate(chain[1])
			want := start.Add(tc.lifetime)
			if tc.clamped {
				want = inter.NotAfter
			}
			if d := leaf.NotAfter.Sub(want); d < -time.Minute || d > time.Minute {
				t.Errorf("leaf NotAfter = %s, want about %s", leaf.NotAfter, want)
			}
			if leaf.NotAfter.After(inter.NotAfter) {
				t.Error("leaf outlives its intermediate")
			}
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("leaf key is %T, want ECDSA", leaf.PublicKey)
			}
			if !inter.IsCA || !inter.MaxPathLenZero {
				t.Error("intermediate must be a CA with path length 0")
			}
			rootPEM, _ := m.RootPEM()
			root, _ := pem.Decode(rootPEM)
			rc, _ := x509.ParseCertificate(root.Bytes)
			if rc.Subject.CommonName != "Test Gateway CA Root" || rc.NotAfter.Sub(rc.NotBefore) < 9*365*24*time.Hour {
				t.Errorf("root %q valid %s..%s", rc.Subject.CommonName, rc.NotBefore, rc.NotAfter)
			}
			if _, ok := rc.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("root key is %T, want ECDSA", rc.PublicKey)
			}
		})
	}
}

func TestIntermediateRotation(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	now := time.Now()
	ca := newInternalCA(storage, "Rotating CA", time.Hour, zaptest.NewLogger(t))
	ca.now = func() time.Time { return now }
	ctx := context.Background()
	root1, inter1, err := ca.load(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Two thirds through its life the intermediate is kept...
	now = inter1.cert.NotBefore.Add(intermediateLifetime * 6 / 10)
	_, inter, _ := ca.load(ctx)
	if inter != inter1 {
		t.Fatal("intermediate replaced too early")
	}
	// ...past that it is replaced, under the same root, and persisted.
	now = inter1.cert.NotAfter.Add(-intermediateLifetime / 4)
	root2, inter2, err := ca.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root1.pem, root2.pem) || bytes.Equal(inter1.pem, inter2.pem) {
		t.Fatal("want the same root and a new intermediate")
	}
	fresh := newInternalCA(storage, "Rotating CA", time.Hour, zaptest.NewLogger(t))
	fresh.now = ca.now
	_, inter3, err := fresh.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inter3.pem, inter2.pem) {
		t.Error("the new intermediate was not stored")
	}
}

func TestInternalCAConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	roots := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One CA per "process": separate objects sharing the storage.
			ca := newInternalCA(&certmagic.FileStorage{Path: dir}, "Shared CA", time.Hour, zaptest.NewLogger(t))
			p, err := ca.rootPEM(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = p
		}()
	}
	wg.Wait()
	for i := range roots {
		if !bytes.Equal(roots[i], roots[0]) {
			t.Fatal("concurrent creators disagree on the root")
		}
	}
}

func TestInternalReissuesLeavesOfAReplacedRoot(t *testing.T) {
	storage := t.TempDir()
	ctx := context.Background()
	m1, err := New(internalConfig(), storage, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Manage(ctx, []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	// The operator deletes the CA but not the issued certificates.
	if err := os.RemoveAll(filepath.Join(storage, "internal_ca")); err != nil {
		t.Fatal(err)
	}

	m2 := newManager(t, internalConfig(), storage)
	if err := m2.Manage(ctx, []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := m2.RootPEM()
	addr := serveTLS(t, m2.ServerTLSConfig("app.test"))
	if _, err := handshake(t, addr, &tls.Config{ServerName: "app.test", RootCAs: testpki.MustPoolOf(t, rootPEM)}); err != nil {
		t.Fatalf("leaf not reissued under the new root: %v", err)
	}
	if n := len(m2.Certificates()); n != 1 {
		t.Errorf("Certificates() lists %d, want the reissued one only", n)
	}
}

func TestInternalIssueRejectsBadCSR(t *testing.T) {
	ca := newInternalCA(&certmagic.FileStorage{Path: t.TempDir()}, "CA", time.Hour, zaptest.NewLogger(t))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	empty, _ := x509.ParseCertificateRequest(der)
	der, _ = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"a.test"}}, key)
	tampered, _ := x509.ParseCertificateRequest(der)
	tampered.Signature = slices.Clone(tampered.Signature)
	tampered.Signature[len(tampered.Signature)-1] ^= 0xff

	for name, csr := range map[string]*x509.CertificateRequest{"no names": empty, "bad signature": tampered} {
		t.Run(name, func(t *testing.T) {
			if _, err := ca.Issue(context.Background(), csr); err == nil {
				t.Error("Issue succeeded")
			}
		})
	}
}
