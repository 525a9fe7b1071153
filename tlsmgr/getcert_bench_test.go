package tlsmgr

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

// BenchmarkGetCertificate measures the certificate choice made on every
// TLS handshake (tls.Config.GetCertificate of ServerTLSConfig), with N
// operator certificates or N names issued by the internal CA, for a client
// that sends a known SNI name, an unknown one, or none (by IP address).
func BenchmarkGetCertificate(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("operator/names=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			var files []configs.CertificateFile
			for i := range n {
				files = append(files, benchPair(b, dir, benchName(i)))
			}
			m, err := New(configs.TLS{Issuer: configs.IssuerNone, MinVersion: "1.2", Certificates: files}, filepath.Join(dir, "storage"), zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(m.Close)
			benchHellos(b, m, benchName(n/2))
		})
	}
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("internal/names=%d", n), func(b *testing.B) {
			cfg := configs.TLS{
				Issuer: configs.IssuerInternal, MinVersion: "1.2",
				Internal: configs.InternalCA{CAName: "Bench CA", LeafLifetime: 24 * time.Hour},
			}
			m, err := New(cfg, b.TempDir(), zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(m.Close)
			names := make([]string, n)
			for i := range names {
				names[i] = benchName(i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := m.Manage(ctx, names); err != nil {
				b.Fatal(err)
			}
			benchHellos(b, m, benchName(n/2))
		})
	}
}

func benchHellos(b *testing.B, m *Manager, known string) {
	get := m.ServerTLSConfig(benchName(0), "h2", "http/1.1").GetCertificate
	conn := benchConn{}
	for _, hc := range []struct {
		name string
		sni  string
	}{
		{"sni", known},
		{"sni_unknown", "other.example.net"},
		{"no_sni", ""},
	} {
		b.Run(hc.name, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: hc.sni, Conn: conn, SupportedProtos: []string{"h2", "http/1.1"}}
			b.ReportAllocs()
			for b.Loop() {
				c, err := get(hello)
				if err != nil || c == nil {
					b.Fatalf("no certificate for %q: %v", hc.sni, err)
				}
			}
		})
	}
}

func benchName(i int) string { return fmt.Sprintf("site%d.example.com", i) }

// benchConn is the accepted connection a ClientHelloInfo refers to: only
// its addresses are read.
type benchConn struct{ net.Conn }

func (benchConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (benchConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000} }

// benchPair writes a self-signed ECDSA certificate for name and its key.
func benchPair(b *testing.B, dir, name string) configs.CertificateFile {
	b.Helper()
	c := testpki.MustSelfSigned(b, testpki.Options{}, name)
	f := configs.CertificateFile{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	if err := os.WriteFile(f.CertFile, c.CertPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(f.KeyFile, c.KeyPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	return f
}
