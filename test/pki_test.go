package test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
)

// testCA is a certificate authority made by a test, standing in for an
// operator's enterprise CA.
type testCA struct{ *testpki.CA }

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	return &testCA{testpki.MustCA(t, name, testpki.Options{Organization: "gateway e2e"})}
}

// issue makes a server certificate for names (DNS names or IP addresses),
// returning the certificate PEM, the PKCS#8 key PEM and the parsed leaf.
func (ca *testCA) issue(t *testing.T, names ...string) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	c := ca.MustIssue(t, testpki.Options{}, names...)
	return c.CertPEM, c.KeyPEM, c.Leaf
}

// issueUntil is issue with a chosen expiry.
func (ca *testCA) issueUntil(t *testing.T, notAfter time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	return ca.issueBetween(t, time.Time{}, notAfter, names...)
}

// issueBetween is issue with a chosen validity period (a zero bound: the
// default).
func (ca *testCA) issueBetween(t *testing.T, notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	c := ca.MustIssue(t, testpki.Options{NotBefore: notBefore, NotAfter: notAfter}, names...)
	return c.CertPEM, c.KeyPEM
}

// issueClient makes a client certificate (a smart card's) for name.
func (ca *testCA) issueClient(t *testing.T, name string) tls.Certificate {
	t.Helper()
	return ca.MustIssue(t, testpki.Options{Client: true}, name).TLS()
}

// selfSignedServer makes a self-signed server certificate that is also its
// own CA, for test servers such as pebble's listener.
func selfSignedServer(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	c := testpki.MustSelfSigned(t, testpki.Options{}, names...)
	return c.CertPEM, c.KeyPEM
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
