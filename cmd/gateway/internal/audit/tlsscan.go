package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// handshaker runs a client TLS handshake over a fresh connection to a
// listener: TLS first (HTTPS, TDS 8) or inside PRELOGIN packets (TDS 7.x).
type handshaker func(ctx context.Context, cfg *tls.Config) (*tls.Conn, error)

// dialTimeout bounds each connection the audit makes.
const dialTimeout = 10 * time.Second

func dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	return d.DialContext(ctx, "tcp", addr)
}

// tlsFirst is the handshake of HTTPS and TDS 8 clients.
func tlsFirst(addr string) handshaker {
	return func(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		raw, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		return tc, nil
	}
}

// inPrelogin is the handshake of a TDS 7.x client that asks for
// encryption (ENCRYPT_ON): PRELOGIN, then TLS inside PRELOGIN packets.
func inPrelogin(addr string) handshaker {
	return func(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		raw, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		_ = raw.SetDeadline(time.Now().Add(dialTimeout))
		ans, err := prelogin(raw, tds.EncryptOn)
		if err == nil && ans.Encryption != nil && ans.Encryption.Mode() != tds.EncryptOn && ans.Encryption.Mode() != tds.EncryptReq {
			err = fmt.Errorf("answered PRELOGIN with %s", ans.Encryption.Mode())
		}
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		tc, err := tdstls.Client(ctx, raw, cfg)
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		_ = raw.SetDeadline(time.Time{})
		return tc, nil
	}
}

// prelogin sends a PRELOGIN asking for enc and returns the answer.
func prelogin(c net.Conn, enc tds.Encryption) (*tds.Prelogin, error) {
	p := tds.Prelogin{Version: tds.Version{Major: 1}, Encryption: &enc, InstOpt: []byte{0}}
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if err := tds.NewWriter(c).WriteMessage(tds.Message{Type: tds.PacketPrelogin, Status: tds.StatusEOM, Payload: b}); err != nil {
		return nil, err
	}
	r := tds.NewReader(c)
	r.SetMaxMessageSize(8 << 10)
	m, err := r.ReadMessage(nil)
	if err != nil {
		return nil, err
	}
	if m.Type != tds.PacketReply {
		return nil, fmt.Errorf("answered PRELOGIN with a %s message", m.Type)
	}
	return tds.ParsePrelogin(m.Payload)
}

// versions are the TLS versions a scan tries, oldest first.
var versions = []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}

// tlsScan is what a listener accepted.
type tlsScan struct {
	accepted, refused []string
	suites            []string // TLS 1.2 suites accepted
	weakSuites        []string // of those, not ECDHE with an AEAD cipher
	tls13Suite        string
	alpn              string
}

// scanTLS tries each TLS version up to maxVersion, then each TLS 1.2 cipher
// suite alone, with sni and alpn offered.
func scanTLS(ctx context.Context, hs handshaker, sni string, alpn []string, maxVersion uint16) tlsScan {
	var s tlsScan
	for _, v := range versions {
		if v > maxVersion {
			break
		}
		cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: v, MaxVersion: v, NextProtos: alpn}
		tc, err := hs(ctx, cfg)
		if err != nil {
			s.refused = append(s.refused, versionName(v))
			continue
		}
		cs := tc.ConnectionState()
		_ = tc.Close()
		s.accepted = append(s.accepted, versionName(v))
		if v == tls.VersionTLS13 {
			s.tls13Suite = tls.CipherSuiteName(cs.CipherSuite)
		}
		if cs.NegotiatedProtocol != "" {
			s.alpn = cs.NegotiatedProtocol
		}
	}
	if !slices.Contains(s.accepted, versionName(tls.VersionTLS12)) {
		return s
	}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			continue
		}
		cfg := &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{cs.ID}, NextProtos: alpn}
		tc, err := hs(ctx, cfg)
		if err != nil {
			continue
		}
		_ = tc.Close()
		s.suites = append(s.suites, cs.Name)
		if !strongSuite(cs.ID) {
			s.weakSuites = append(s.weakSuites, cs.Name)
		}
	}
	return s
}

// strongSuite: ECDHE key exchange (forward secrecy) and an AEAD cipher.
func strongSuite(id uint16) bool {
	switch id {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

func versionName(v uint16) string { return tls.VersionName(v) }

// chainFor fetches the chain served for sni and verifies it for sni
// against roots (nil: the system roots).
func chainFor(ctx context.Context, hs handshaker, sni string, roots *x509.CertPool) (CertReport, error) {
	tc, err := hs(ctx, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		return CertReport{Name: sni}, err
	}
	defer tc.Close()
	return certReport(sni, tc.ConnectionState().PeerCertificates, roots), nil
}

// certReport describes chain[0] and verifies the chain for name.
func certReport(name string, chain []*x509.Certificate, roots *x509.CertPool) CertReport {
	r := CertReport{Name: name}
	if len(chain) == 0 {
		r.VerifyErr = "no certificate presented"
		return r
	}
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	r.Subject, r.Issuer, r.SANs, r.NotBefore, r.NotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.DNSNames, leaf.NotBefore, leaf.NotAfter
	for _, ip := range leaf.IPAddresses {
		r.SANs = append(r.SANs, ip.String())
	}
	r.DaysLeft = time.Until(leaf.NotAfter).Hours() / 24
	r.SHA256 = hex.EncodeToString(sum[:])
	r.Key = keyName(leaf)
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		r.VerifyErr = err.Error()
	} else {
		r.Verified = true
	}
	return r
}

func keyName(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// expiring says whether a certificate is close enough to its end to need
// attention: under days left and, for one the gateway renews itself
// (autoRenewed), past the last third of its life. The second condition
// spares short-lived certificates the gateway renews itself (internal CA leaves live 7 days and are renewed at a third of
// their life; ACME ones 90 days, renewed at 30): for them, being under the
// threshold only means renewal is not working once that point has passed.
func expiring(cr CertReport, days float64, autoRenewed bool) bool {
	if cr.DaysLeft >= days {
		return false
	}
	if !autoRenewed {
		return true
	}
	life := cr.NotAfter.Sub(cr.NotBefore)
	return life <= 0 || time.Until(cr.NotAfter) < life/3
}
