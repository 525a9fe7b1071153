package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

// TestIssueVerifies checks that every kind of key makes a certificate that
// verifies to its CA for its names and purpose, and whose PEM files load as
// a key pair.
func TestIssueVerifies(t *testing.T) {
	ca := MustCA(t, "Test CA", Options{})
	for _, k := range []KeyType{ECDSA, ECDSASEC1, ECDSAWithParams, RSA} {
		c := ca.MustIssue(t, Options{Key: k}, "app.test", "127.0.0.1")
		for _, name := range []string{"app.test", "127.0.0.1"} {
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool()}); err != nil {
				t.Errorf("key %d, %s: %v", k, name, err)
			}
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: ca.Pool()}); err == nil {
			t.Errorf("key %d: verifies for a name it was not issued for", k)
		}
		if _, err := tls.X509KeyPair(c.ChainPEM(), c.KeyPEM); err != nil {
			t.Errorf("key %d: PEM pair: %v", k, err)
		}
		if c.Leaf.Subject.CommonName != "app.test" {
			t.Errorf("common name %q, want the first name", c.Leaf.Subject.CommonName)
		}
	}
	client := ca.MustIssue(t, Options{Client: true}, "alice")
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err == nil {
		t.Error("a client certificate verifies for server authentication")
	}
	other := MustCA(t, "Other CA", Options{})
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("verifies to a CA that did not issue it")
	}
	if len(ca.MustIssue(t, Options{}, "a.test").TLSWithChain().Certificate) != 2 {
		t.Error("TLSWithChain does not carry the issuer")
	}
}

// TestSelfSignedAndValidity checks a self-signed certificate is trusted by
// itself alone, and that chosen validity bounds are kept.
func TestSelfSignedAndValidity(t *testing.T) {
	notAfter := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	c := MustSelfSigned(t, Options{NotAfter: notAfter}, "localhost")
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: c.Pool()}); err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.Equal(notAfter) {
		t.Errorf("not after %v, want %v", c.Leaf.NotAfter, notAfter)
	}
	if len(c.TLSWithChain().Certificate) != 1 || c.IssuerPEM != nil {
		t.Error("a self-signed certificate has an issuer")
	}
	if _, err := PoolOf([]byte("not PEM")); err == nil {
		t.Error("PoolOf accepts data without a certificate")
	}
	if _, err := SelfSigned(Options{}); err == nil {
		t.Error("a certificate without a name was made")
	}
}
