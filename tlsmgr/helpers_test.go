package tlsmgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

// testCA is a throwaway CA for operator and upstream certificates.
type testCA = testpki.CA

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	return testpki.MustCA(t, name, testpki.Options{})
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePair writes a leaf (followed by its CA) and its key into dir.
func writePair(t *testing.T, dir, base string, l *testpki.Cert) configs.CertificateFile {
	t.Helper()
	return configs.CertificateFile{
		CertFile: writeFile(t, filepath.Join(dir, base+".crt"), l.ChainPEM()),
		KeyFile:  writeFile(t, filepath.Join(dir, base+".key"), l.KeyPEM),
	}
}

func internalConfig() configs.TLS {
	return configs.TLS{
		Issuer:     configs.IssuerInternal,
		MinVersion: "1.2",
		Internal:   configs.InternalCA{CAName: "Test Gateway CA", LeafLifetime: 168 * time.Hour},
	}
}

func newManager(t *testing.T, cfg configs.TLS, storage string) *Manager {
	t.Helper()
	m, err := New(cfg, storage, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// serveTLS accepts TLS connections on a 127.0.0.1 port, completes each
// handshake and closes the connection. It returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if c.(*tls.Conn).HandshakeContext(ctx) == nil {
					// Wait for the client to close, so that TLS 1.3 clients
					// finish reading the server's last flight.
					_, _ = c.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr with cfg and returns the connection state.
func handshake(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// verifyFor returns a client config that sends sni (or none when it is an IP
// address or empty) and verifies the chain to roots for name.
func verifyFor(roots *x509.CertPool, sni, name string) *tls.Config {
	return &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified below, for a name other than the SNI
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
			return err
		},
	}
}
