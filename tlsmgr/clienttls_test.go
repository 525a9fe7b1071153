package tlsmgr

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

func TestClientTLSConfig(t *testing.T) {
	ca := newTestCA(t, "Upstream CA")
	other := newTestCA(t, "Other CA")
	leaf := ca.MustIssue(t, testpki.Options{}, "db.test", "127.0.0.1")
	addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLSWithChain()}})

	dir := t.TempDir()
	caFile := writeFile(t, filepath.Join(dir, "ca.PEM"), ca.PEM)
	otherFile := writeFile(t, filepath.Join(dir, "other.PEM"), other.PEM)
	sum := sha256.Sum256(leaf.Leaf.Raw)
	pin := hex.EncodeToString(sum[:])
	colonPin := strings.ToUpper(strings.Join(splitEvery(pin, 2), ":"))
	wrongPin := strings.Repeat("ab", 32)

	tests := []struct {
		name     string
		upstream configs.UpstreamTLS
		want     error // nil, or the kind of *VerifyError
	}{
		{"trusted ca", configs.UpstreamTLS{ServerName: "db.test", CAFile: caFile}, nil},
		{"trusted ca, ip address", configs.UpstreamTLS{ServerName: "127.0.0.1", CAFile: caFile}, nil},
		{"untrusted ca", configs.UpstreamTLS{ServerName: "db.test", CAFile: otherFile}, ErrUntrusted},
		{"system roots", configs.UpstreamTLS{ServerName: "db.test"}, ErrUntrusted},
		{"wrong server name", configs.UpstreamTLS{ServerName: "other.test", CAFile: caFile}, ErrNameMismatch},
		{"pin only: name and chain not checked", configs.UpstreamTLS{ServerName: "whatever.test", PinSHA256: pin}, nil},
		{"pin in openssl fingerprint form", configs.UpstreamTLS{ServerName: "db.test", PinSHA256: colonPin}, nil},
		{"pin mismatch", configs.UpstreamTLS{ServerName: "db.test", PinSHA256: wrongPin}, ErrPinMismatch},
		{"pin and ca", configs.UpstreamTLS{ServerName: "db.test", CAFile: caFile, PinSHA256: pin}, nil},
		{"pin matches but ca untrusted", configs.UpstreamTLS{ServerName: "db.test", CAFile: otherFile, PinSHA256: pin}, ErrUntrusted},
		{"pin and ca, pin mismatch", configs.UpstreamTLS{ServerName: "db.test", CAFile: caFile, PinSHA256: wrongPin}, ErrPinMismatch},
		{"insecure", configs.UpstreamTLS{ServerName: "other.test", InsecureSkipVerify: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ClientTLSConfig(tc.upstream, zaptest.NewLogger(t))
			if err != nil {
				t.Fatalf("ClientTLSConfig: %v", err)
			}
			_, err = handshake(t, addr, cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("handshake error %v, want %v", err, tc.want)
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.ServerName != tc.upstream.ServerName {
				t.Fatalf("error %v is not a *VerifyError for %s", err, tc.upstream.ServerName)
			}
			switch tc.want {
			case ErrPinMismatch:
				if !bytes.Equal(ve.Got, sum[:]) {
					t.Errorf("Got = %x, want the leaf's SHA-256", ve.Got)
				}
			case ErrUntrusted:
				var uae x509.UnknownAuthorityError
				if !errors.As(err, &uae) {
					t.Errorf("error %v does not wrap x509.UnknownAuthorityError", err)
				}
			}
		})
	}
}

// TestClientTLSConfigResumes: a second connection resumes the first one's
// session (TLS 1.2, the version TDS 7.x carries, and TLS 1.3), and the
// verification still runs on the resumed handshake: a configuration whose
// pin no longer matches the session's certificate, or that trusts another
// CA, is refused even though the session itself is valid.
func TestClientTLSConfigResumes(t *testing.T) {
	ca := newTestCA(t, "Upstream CA")
	leaf := ca.MustIssue(t, testpki.Options{}, "db.test")
	dir := t.TempDir()
	caFile := writeFile(t, filepath.Join(dir, "ca.PEM"), ca.PEM)
	otherFile := writeFile(t, filepath.Join(dir, "other.PEM"), newTestCA(t, "Other CA").PEM)
	sum := sha256.Sum256(leaf.Leaf.Raw)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLSWithChain()}, MaxVersion: version})
			cfg, err := ClientTLSConfig(configs.UpstreamTLS{ServerName: "db.test", CAFile: caFile, PinSHA256: hex.EncodeToString(sum[:])}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			verified := 0
			verify := cfg.VerifyConnection
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				verified++
				return verify(cs)
			}
			first, err := resumingHandshake(t, addr, cfg)
			if err != nil || first.DidResume {
				t.Fatalf("first handshake: resumed %v, error %v; want a full handshake", first.DidResume, err)
			}
			second, err := resumingHandshake(t, addr, cfg.Clone()) // clones share the cache
			if err != nil || !second.DidResume {
				t.Fatalf("second handshake: resumed %v, error %v; want a resumed one", second.DidResume, err)
			}
			if verified != 2 {
				t.Errorf("VerifyConnection ran %d times over a full and a resumed handshake, want 2", verified)
			}

			// The same session cache under a configuration whose pin no
			// longer matches: the resumed handshake must fail.
			pinned, err := ClientTLSConfig(configs.UpstreamTLS{ServerName: "db.test", CAFile: caFile, PinSHA256: strings.Repeat("ab", 32)}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			pinned.ClientSessionCache = cfg.ClientSessionCache
			if _, err := resumingHandshake(t, addr, pinned); !errors.Is(err, ErrPinMismatch) {
				t.Fatalf("resumed handshake with a mismatched pin: error %v, want %v", err, ErrPinMismatch)
			}
			// A configuration trusting another CA, handed the session: it
			// never accepted this chain itself, so the resumed handshake
			// gets the full verification and fails.
			foreign, err := ClientTLSConfig(configs.UpstreamTLS{ServerName: "db.test", CAFile: otherFile}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			foreign.ClientSessionCache = cfg.ClientSessionCache
			if _, err := resumingHandshake(t, addr, foreign); !errors.Is(err, ErrUntrusted) {
				t.Fatalf("resumed handshake under a configuration trusting another CA: error %v, want %v", err, ErrUntrusted)
			}
		})
	}
}

// TestVerifierResumedExpired: a resumed session whose leaf this verifier
// accepted earlier still fails once the leaf has expired — the shortcut on
// resumption keeps the validity check — and a fresh configuration (no
// accepted leaves) verifies resumed sessions in full.
func TestVerifierResumedExpired(t *testing.T) {
	ca := newTestCA(t, "Upstream CA")
	expired := ca.MustIssue(t, testpki.Options{NotAfter: time.Now().Add(-time.Hour)}, "db.test")
	valid := ca.MustIssue(t, testpki.Options{}, "db.test")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	v := &verifier{serverName: "db.test", chain: true, roots: pool}

	resumed := func(l *testpki.Cert) tls.ConnectionState {
		return tls.ConnectionState{DidResume: true, PeerCertificates: []*x509.Certificate{l.Leaf}}
	}
	if err := v.verify(resumed(valid)); err != nil {
		t.Fatalf("resumed session, leaf never seen: %v", err)
	}
	if !v.accepted(sha256.Sum256(valid.Leaf.Raw)) {
		t.Fatal("a fully verified leaf was not remembered")
	}
	v.accept(sha256.Sum256(expired.Leaf.Raw)) // as if accepted while it was valid
	if err := v.verify(resumed(expired)); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("resumed session with an expired leaf: error %v, want %v", err, ErrUntrusted)
	}
}

// resumingHandshake dials addr and, under TLS 1.3, reads once so that the
// server's session ticket (sent after the handshake) reaches the cache.
func resumingHandshake(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	cs := c.ConnectionState()
	if cs.Version == tls.VersionTLS13 {
		// The test server never writes: the read ends at the deadline,
		// after the ticket has been processed.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = c.Read(make([]byte, 1))
	}
	return cs, nil
}

func TestClientTLSConfigInsecureWarns(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	cfg, err := ClientTLSConfig(configs.UpstreamTLS{ServerName: "db.test", InsecureSkipVerify: true}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.InsecureSkipVerify {
		t.Error("InsecureSkipVerify not set")
	}
	entries := logs.FilterMessage("upstream certificate verification disabled").All()
	if len(entries) != 1 || entries[0].ContextMap()["server_name"] != "db.test" {
		t.Errorf("warning not logged with the server name: %v", logs.All())
	}
}

func TestClientTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	empty := writeFile(t, filepath.Join(dir, "empty.pem"), []byte("no certificates here"))
	tests := []struct {
		name     string
		upstream configs.UpstreamTLS
		mention  string
	}{
		{"missing ca file", configs.UpstreamTLS{ServerName: "db.test", CAFile: missing}, missing},
		{"ca file without certificates", configs.UpstreamTLS{ServerName: "db.test", CAFile: empty}, empty},
		{"bad pin", configs.UpstreamTLS{ServerName: "db.test", PinSHA256: "abc"}, "pin_sha256"},
		{"no server name", configs.UpstreamTLS{}, "server_name"},
		{"insecure with a pin", configs.UpstreamTLS{ServerName: "db.test", InsecureSkipVerify: true, PinSHA256: strings.Repeat("ab", 32)}, "insecure_skip_verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientTLSConfig(tc.upstream, zaptest.NewLogger(t))
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %v, want one naming %s", err, tc.mention)
			}
		})
	}
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
