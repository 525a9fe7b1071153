package tlsmgr

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
	"software.sslmate.com/src/go-pkcs12"
)

// TestIssueUpstream: the upstream certificate chains to the same root the
// gateway's own internal certificates do, round-trips through the PFX in
// both encodings, and is recorded for `gateway check`.
func TestIssueUpstream(t *testing.T) {
	storage := t.TempDir()
	m := newManager(t, internalConfig(), storage)
	ctx := context.Background()
	c, err := m.IssueUpstream(ctx, []string{"SQL01.clinic.local", "10.0.1.7"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := m.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	inter.AddCert(c.Intermediate)
	for _, name := range []string{"sql01.clinic.local", "10.0.1.7"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: testpki.MustPoolOf(t, rootPEM), Intermediates: inter}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, ok := c.Leaf.PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("key is %T, want RSA (SQL Server loads only RSA certificates)", c.Leaf.PublicKey)
	}
	if got := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); got < 30*24*time.Hour || got > 30*24*time.Hour+2*time.Minute {
		t.Errorf("lifetime %s, want 30 days", got)
	}
	for _, aes := range []bool{false, true} {
		pfx, err := c.PFX("pw", aes)
		if err != nil {
			t.Fatal(err)
		}
		key, leaf, cas, err := pkcs12.DecodeChain(pfx, "pw")
		if err != nil || !leaf.Equal(c.Leaf) || len(cas) != 2 || !key.(*rsa.PrivateKey).Equal(c.Key) {
			t.Errorf("aes=%v: PFX decodes to %v %v %d CAs", aes, err, leaf.Subject, len(cas))
		}
	}
	if _, err := c.PFX("", false); err == nil {
		t.Error("a PFX without a password was written")
	}

	out := filepath.Join(t.TempDir(), "sql01.pfx")
	if err := m.RecordUpstream(ctx, c, out); err != nil {
		t.Fatal(err)
	}
	later, err := m.IssueUpstream(ctx, []string{"sql01.clinic.local", "10.0.1.7"}, 60*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return time.Now().Add(time.Minute) }
	if err := m.RecordUpstream(ctx, later, out); err != nil {
		t.Fatal(err)
	}
	recs, err := UpstreamCertificatesIn(internalConfig(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].File != out || !recs[0].NotAfter.Equal(later.Leaf.NotAfter.UTC()) ||
		!slices.Equal(recs[0].Names, []string{"sql01.clinic.local", "10.0.1.7"}) || recs[0].SHA256 != later.SHA256() {
		t.Errorf("records = %+v, want only the later certificate", recs)
	}
	if recs, err := UpstreamCertificatesIn(internalConfig(), t.TempDir()); err != nil || len(recs) != 0 {
		t.Errorf("empty storage: %v %v", recs, err)
	}
}
