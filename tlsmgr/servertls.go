package tlsmgr

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// acmeTLS1 is the ALPN protocol of the ACME TLS-ALPN-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// serverCipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with
// AEAD ciphers only (Mozilla "intermediate"). TLS 1.3 suites are not
// configurable in crypto/tls and are all AEAD.
var serverCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverCurves prefers the post-quantum hybrid, then X25519, then NIST curves.
var serverCurves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

// ServerTLSConfig returns the *tls.Config for a server listener.
//
// Certificates: for the client's SNI name, an operator certificate (exact
// name, then wildcard), else certmagic's. When SNI is empty, the certificate
// for the listener's local IP address is tried first; when SNI is empty or
// no certificate matches it, defaultName's is served (the first site's first
// host), so clients that connect by IP address still get one.
//
// Policy: TLS 1.2 minimum (1.3 when tls.min_version is "1.3"); TLS 1.2 only
// with ECDHE and AEAD suites; curves X25519MLKEM768, X25519, P-256, P-384;
// session tickets on. NextProtos is nextProtos; when the ACME issuer has
// TLS-ALPN-01 enabled and nextProtos is not empty, "acme-tls/1" is appended
// and its challenge handshakes are answered. (With no application protocol to
// offer, none is added: a server whose only protocol is acme-tls/1 would
// refuse every client that sends ALPN.)
func (m *Manager) ServerTLSConfig(defaultName string, nextProtos ...string) *tls.Config {
	return m.serverTLSConfig(m.certificateFor(normalizeName(defaultName), true), nextProtos)
}

// NamedServerTLSConfig is ServerTLSConfig for a listener that has one name,
// such as a SQL listener's hostname: a client that sends no SNI, or an
// unknown one, gets name's certificate, never the one for the local IP
// address. Many SQL drivers (FreeTDS among them) send no SNI yet verify the
// certificate against the host name they were given.
func (m *Manager) NamedServerTLSConfig(name string, nextProtos ...string) *tls.Config {
	return m.serverTLSConfig(m.certificateFor(normalizeName(name), false), nextProtos)
}

func (m *Manager) serverTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), nextProtos []string) *tls.Config {
	protos := slices.Clone(nextProtos)
	if m.tlsALPNEnabled() && len(protos) > 0 && !slices.Contains(protos, acmeTLS1) {
		protos = append(protos, acmeTLS1)
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     slices.Clone(serverCipherSuites),
		CurvePreferences: slices.Clone(serverCurves),
		NextProtos:       protos,
		GetCertificate:   getCert,
	}
	if m.cfg.MinVersion == configs.TLS13 {
		cfg.MinVersion = tls.VersionTLS13
	}
	return cfg
}

func (m *Manager) tlsALPNEnabled() bool {
	return m.acme != nil && m.cfg.Issuer == configs.IssuerACME && !m.cfg.ACME.DisableTLSALPNChallenge
}

// certificateFor is GetCertificate for ServerTLSConfig; byLocalIP makes a
// client without SNI get the certificate of the address it connected to, if
// there is one, before defaultName's.
func (m *Manager) certificateFor(defaultName string, byLocalIP bool) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		// RFC 8737 section 3: the validation handshake offers only acme-tls/1
		// and names the identifier in SNI; certmagic holds the challenge cert.
		if m.tlsALPNEnabled() && hello.ServerName != "" &&
			len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLS1 {
			return m.magic.GetCertificate(hello)
		}
		candidates := make([]string, 0, 2)
		if sni := normalizeName(hello.ServerName); sni != "" {
			candidates = append(candidates, sni)
		} else if ip := localIP(hello.Conn); byLocalIP && ip != "" {
			candidates = append(candidates, ip)
		}
		if defaultName != "" {
			candidates = append(candidates, defaultName)
		}
		for _, name := range candidates {
			if c := m.lookup(hello, name); c != nil {
				return c, nil
			}
		}
		if ce := m.log.Check(zap.DebugLevel, "no certificate for server name"); ce != nil {
			ce.Write(zap.String("server_name", hello.ServerName), zap.String("remote", remoteAddr(hello.Conn)))
		}
		return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
	}
}

// lookup returns the certificate to serve for a normalized name, or nil.
func (m *Manager) lookup(hello *tls.ClientHelloInfo, name string) *tls.Certificate {
	if c := m.ops.Load().lookup(name); c != nil {
		return c.cert
	}
	if m.cache == nil {
		return nil
	}
	choices := m.cache.AllMatchingCertificates(name)
	if len(choices) == 0 {
		return nil
	}
	c, err := certmagic.DefaultCertificateSelector(hello, choices)
	if err != nil {
		return nil
	}
	return &c.Certificate
}

// localIP is the normalized IP address the client connected to, or "".
func localIP(c net.Conn) string {
	if c == nil || c.LocalAddr() == nil {
		return ""
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return normalizeName(a.IP.String())
	}
	host, _, err := net.SplitHostPort(c.LocalAddr().String())
	if err != nil {
		return ""
	}
	return normalizeName(host)
}

func remoteAddr(c net.Conn) string {
	if c == nil || c.RemoteAddr() == nil {
		return ""
	}
	return c.RemoteAddr().String()
}
