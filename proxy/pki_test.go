package proxy

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/gateway-project/gateway/internal/testpki"
)

// testAuthority is a CA made by a test, for upstream server certificates
// and client certificates.
type testAuthority struct{ *testpki.CA }

func newAuthority(t *testing.T, name string) *testAuthority {
	t.Helper()
	return &testAuthority{testpki.MustCA(t, name, testpki.Options{})}
}

// issue makes a leaf for names (DNS names or IP addresses); client
// certificates get the clientAuth extended key usage.
func (a *testAuthority) issue(t *testing.T, client bool, names ...string) tls.Certificate {
	t.Helper()
	return a.MustIssue(t, testpki.Options{Client: client}, names...).TLS()
}

// file writes the CA's PEM into a temporary file and returns its path.
func (a *testAuthority) file(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, a.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
