package tdstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// Test credentials. The password has characters that need escaping in URLs
// and connection strings.
const (
	testUser     = "alice"
	testPassword = "s3cret;P@ss word"
	// testHost is the name on the test certificate (with 127.0.0.1).
	testHost = "localhost"
)

// fixture is a running server with a certificate from a throwaway CA whose
// root is in rootFile.
type fixture struct {
	srv      *Server
	rootPEM  []byte
	rootFile string
	dir      string
}

// newFixture starts a server with cfg, adding the test certificate, the test
// user and a test logger when cfg has none.
func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	cert, rootPEM, err := NewCertificate(testHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Certificate == nil {
		cfg.Certificate = &cert
	}
	if cfg.Users == nil {
		cfg.Users = map[string]string{testUser: testPassword}
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	dir := t.TempDir()
	f := &fixture{srv: srv, rootPEM: rootPEM, rootFile: filepath.Join(dir, "root.pem"), dir: dir}
	if err := os.WriteFile(f.rootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// testContext returns a context that ends before the test's deadline.
func testContext(t testing.TB) context.Context {
	t.Helper()
	timeout := 2 * time.Minute
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timeout = min(timeout, time.Until(dl)-5*time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// waitOne waits for session id to end.
func (f *fixture) waitOne(t *testing.T, id int) SessionRecord {
	t.Helper()
	rec, err := f.srv.WaitSession(testContext(t), id)
	if err != nil {
		t.Fatalf("session %d did not end: %v (sessions: %+v)", id, err, f.srv.Sessions())
	}
	return rec
}

// lookPath returns the path of a client binary, or skips the test naming
// the Debian package that provides it.
func lookPath(t *testing.T, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		missingClient(t, "%s not found: install the Debian package %s", bin, pkg)
	}
	return p
}

// expectedValue returns the value of row r of tdstest.rows(_, m) (nrows:
// text).
func expectedValue(text bool, r int64, m int) []byte {
	out := make([]byte, 0, m)
	for i := 0; len(out) < m; i++ {
		if text {
			out = append(out, byte('a'+(r+int64(i))%26), 0)
		} else {
			out = append(out, byte((r+int64(i))%251))
		}
	}
	return out
}

// missingClient skips a test whose real client is not installed, or fails it
// when CI is set: CI installs every client (.ci/install-deps), so a skip
// there would hide a missing install step.
func missingClient(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI is set: real clients are required)", args...)
	}
	t.Skipf(format, args...)
}
