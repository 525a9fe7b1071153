package tlsmgr

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
)

// testCA is a throwaway CA for operator and upstream certificates.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pemCert(der)}
}

// keyKind selects how leaf keys are generated and PEM-encoded.
type keyKind int

const (
	keyECSEC1   keyKind = iota // "EC PRIVATE KEY"
	keyECPKCS8                 // "PRIVATE KEY"
	keyRSAPKCS1                // "RSA PRIVATE KEY"
	keyECParams                // "EC PARAMETERS" then "EC PRIVATE KEY"
)

// testLeaf is a leaf certificate issued by a testCA.
type testLeaf struct {
	cert    *x509.Certificate
	certPEM []byte // the leaf only
	keyPEM  []byte
}

type leafOpts struct {
	key      keyKind
	notAfter time.Time // zero: 24h from now
}

func (ca *testCA) leaf(t *testing.T, opts leafOpts, names ...string) *testLeaf {
	t.Helper()
	var (
		key    crypto.Signer
		keyPEM []byte
		err    error
	)
	switch opts.key {
	case keyRSAPKCS1:
		rk, e := rsa.GenerateKey(rand.Reader, 2048)
		key, err = rk, e
		if err == nil {
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
		}
	default:
		ek, e := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		key, err = ek, e
		if err == nil && (opts.key == keyECSEC1 || opts.key == keyECParams) {
			der, _ := x509.MarshalECPrivateKey(ek)
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
			if opts.key == keyECParams {
				// The named curve P-256 as openssl ecparam writes it.
				params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
				keyPEM = append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}), keyPEM...)
			}
		} else if err == nil {
			der, _ := x509.MarshalPKCS8PrivateKey(ek)
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	notAfter := opts.notAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	serial, _ := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testLeaf{cert: cert, certPEM: pemCert(der), keyPEM: keyPEM}
}

// tlsCert is the leaf with the CA as its chain, for test servers.
func (l *testLeaf) tlsCert(t *testing.T, ca *testCA) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(append(append([]byte{}, l.certPEM...), ca.pem...), l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePair writes a leaf (followed by its CA) and its key into dir.
func writePair(t *testing.T, dir, base string, l *testLeaf, ca *testCA) configs.CertificateFile {
	t.Helper()
	return configs.CertificateFile{
		CertFile: writeFile(t, filepath.Join(dir, base+".crt"), append(append([]byte{}, l.certPEM...), ca.pem...)),
		KeyFile:  writeFile(t, filepath.Join(dir, base+".key"), l.keyPEM),
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

func poolOf(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificates in PEM")
	}
	return p
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
