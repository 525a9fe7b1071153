package tlsmgr

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

func TestServerTLSPolicy(t *testing.T) {
	servers := map[string]string{} // min_version -> address
	var roots []byte
	storage := t.TempDir()
	for _, minVersion := range []string{"1.2", "1.3"} {
		cfg := internalConfig()
		cfg.MinVersion = configs.TLSVersion(minVersion)
		m := newManager(t, cfg, storage)
		if err := m.Manage(context.Background(), []string{"app.test"}); err != nil {
			t.Fatal(err)
		}
		roots, _ = m.RootPEM()
		servers[minVersion] = serveTLS(t, m.ServerTLSConfig("app.test", "h2", "http/1.1"))
	}
	// An RSA operator certificate, so that ECDHE-RSA and RSA key exchange
	// suites are possible at all.
	ca := newTestCA(t, "Policy Test CA")
	rsaCert := writePair(t, t.TempDir(), "rsa", ca.MustIssue(t, testpki.Options{Key: testpki.RSA}, "app.test"))
	mr := newManager(t, noneConfig(rsaCert), t.TempDir())
	servers["rsa"] = serveTLS(t, mr.ServerTLSConfig("app.test"))
	pool := testpki.MustPoolOf(t, roots)
	pool.AppendCertsFromPEM(ca.PEM)

	tests := []struct {
		name    string
		server  string // min_version, or "rsa"
		client  *tls.Config
		ok      bool
		version uint16
	}{
		{"tls 1.1 refused", "1.2", &tls.Config{MaxVersion: tls.VersionTLS11}, false, 0},
		{"tls 1.2 cbc suite refused", "1.2", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false, 0},
		{"rsa certificate: tls 1.2 cbc suite refused", "rsa", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}}, false, 0},
		{"rsa certificate: rsa key exchange refused", "rsa", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}}, false, 0},
		{"rsa certificate: tls 1.2 ecdhe gcm", "rsa", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}}, true, tls.VersionTLS12},
		{"tls 1.2 ecdhe gcm", "1.2", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true, tls.VersionTLS12},
		{"tls 1.2 ecdhe chacha20", "1.2", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true, tls.VersionTLS12},
		{"tls 1.3", "1.2", &tls.Config{}, true, tls.VersionTLS13},
		{"min 1.3 refuses tls 1.2", "1.3", &tls.Config{MaxVersion: tls.VersionTLS12}, false, 0},
		{"min 1.3 accepts tls 1.3", "1.3", &tls.Config{}, true, tls.VersionTLS13},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client.Clone()
			client.ServerName, client.RootCAs = "app.test", pool
			cs, err := handshake(t, servers[tc.server], client)
			if tc.ok != (err == nil) {
				t.Fatalf("handshake error = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && cs.Version != tc.version {
				t.Errorf("version %x, want %x", cs.Version, tc.version)
			}
		})
	}
}

func TestServerTLSConfigFields(t *testing.T) {
	m := newManager(t, internalConfig(), t.TempDir())
	if err := m.Manage(context.Background(), []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	cfg := m.ServerTLSConfig("app.test", "h2", "http/1.1")
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %v", cfg.NextProtos)
	}
	if cfg.SessionTicketsDisabled {
		t.Error("session tickets disabled")
	}
	if cfg.CurvePreferences[0] != tls.X25519MLKEM768 {
		t.Errorf("first curve %v, want X25519MLKEM768", cfg.CurvePreferences[0])
	}

	rootPEM, _ := m.RootPEM()
	addr := serveTLS(t, cfg)
	cs, err := handshake(t, addr, &tls.Config{ServerName: "app.test", RootCAs: testpki.MustPoolOf(t, rootPEM), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if cs.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN %q, want h2", cs.NegotiatedProtocol)
	}
	if cs.CurveID != tls.X25519MLKEM768 {
		t.Errorf("key exchange %v, want X25519MLKEM768", cs.CurveID)
	}
}

func TestNoCertificateAtAll(t *testing.T) {
	m := newManager(t, noneConfig(), t.TempDir())
	addr := serveTLS(t, m.ServerTLSConfig(""))
	if _, err := handshake(t, addr, &tls.Config{ServerName: "app.test", InsecureSkipVerify: true}); err == nil {
		t.Fatal("handshake succeeded without any certificate")
	}
}

// A SQL listener's clients often send no SNI (FreeTDS) yet verify its
// hostname: NamedServerTLSConfig serves that name's certificate even when the
// local IP address has one, where ServerTLSConfig prefers the IP's.
func TestNamedServerTLSConfigIgnoresLocalIP(t *testing.T) {
	m := newManager(t, internalConfig(), t.TempDir())
	if err := m.Manage(context.Background(), []string{"127.0.0.1", "sql.test"}); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := m.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := testpki.MustPoolOf(t, rootPEM)
	tests := []struct {
		name   string
		cfg    *tls.Config
		verify string // the name the served certificate must be valid for
	}{
		{"named: hostname", m.NamedServerTLSConfig("sql.test"), "sql.test"},
		{"default: local IP first", m.ServerTLSConfig("sql.test"), "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveTLS(t, tc.cfg)
			if _, err := handshake(t, addr, verifyFor(roots, "", tc.verify)); err != nil {
				t.Fatalf("no-SNI client verifying %s: %v", tc.verify, err)
			}
		})
	}
}
