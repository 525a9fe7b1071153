package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"slices"

	"github.com/gateway-project/gateway/configs"
)

// headerClientCert carries the verified client certificate to IIS the way
// Application Request Routing does: the leaf's DER, base64, one line. It
// is written in ARR's spelling (IIS reads headers case-insensitively).
const headerClientCert = "X-ARR-ClientCert"

// setClientAuth loads a site's client_auth settings.
func (s *site) setClientAuth(cfg configs.ClientAuth, key string) error {
	switch cfg.Mode {
	case "", configs.ClientAuthNone:
		return nil
	case configs.ClientAuthOptional:
		s.clientAuth = tls.VerifyClientCertIfGiven
	case configs.ClientAuthRequired:
		s.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return fmt.Errorf("%s.client_auth.mode: unknown mode %q", key, cfg.Mode)
	}
	data, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return fmt.Errorf("%s.client_auth.ca_file: %w", key, err)
	}
	s.clientCAs = x509.NewCertPool()
	if !s.clientCAs.AppendCertsFromPEM(data) {
		return fmt.Errorf("%s.client_auth.ca_file: no PEM certificates in %s", key, cfg.CAFile)
	}
	return nil
}

// prepareSiteTLS gives a site that needs them its own server TLS
// configurations, clones of the listener's base: with client
// authentication if configured (tlsH2), and without h2 in ALPN for sites
// that may offer only HTTP/1.1 (tlsH1: http2 off, or auto with Windows
// authentication, see http2.go).
func (srv *Server) prepareSiteTLS(s *site) {
	needH1 := s.fallsBack() || s.http2 == configs.HTTP2Off
	if s.clientAuth == tls.NoClientCert && !needH1 {
		return
	}
	protos := srv.baseTLS.NextProtos
	if len(protos) == 0 {
		protos = []string{"h2", "http/1.1"} // what net/http would offer
	}
	c := srv.baseTLS.Clone()
	c.GetConfigForClient = nil
	c.NextProtos = slices.Clone(protos)
	s.applyServerTLS(c)
	if s.clientAuth != tls.NoClientCert {
		s.tlsH2 = c
	}
	if needH1 {
		h1 := c.Clone()
		h1.NextProtos = slices.DeleteFunc(h1.NextProtos, func(p string) bool { return p == "h2" })
		s.tlsH1 = h1
	}
}

// listenerTLS returns the listener's TLS configuration: a clone of the base
// that, when a site of the configuration in force needs it, picks a
// per-site configuration by SNI through GetConfigForClient (client
// certificates; HTTP/1.1 only for http2: off, and for auto once a site has
// shown Windows authentication, see http2.go). The base's own
// GetConfigForClient, if any, is still called first, and its result gets
// the site's settings.
func (srv *Server) listenerTLS() *tls.Config {
	base := srv.baseTLS
	cfg := base.Clone()
	inner := base.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		gen := srv.gen.Load()
		// ACME TLS-ALPN-01 validation (RFC 8737) has no client certificate
		// and speaks no HTTP: leave it to the base configuration.
		if !gen.tlsNeeded || len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == "acme-tls/1" {
			if inner != nil {
				return inner(hello)
			}
			return nil, nil
		}
		s := gen.table.match(hello.ServerName)
		s.awaitProbe(hello.Context())
		c := s.tlsH2
		if s.h1Only.Load() {
			c = s.tlsH1
		}
		if inner != nil {
			ic, err := inner(hello)
			if err != nil || ic == nil || c == nil {
				return ic, err
			}
			ic = ic.Clone()
			s.applyServerTLS(ic)
			if s.h1Only.Load() {
				ic.NextProtos = slices.DeleteFunc(slices.Clone(ic.NextProtos), func(p string) bool { return p == "h2" })
			}
			return ic, nil
		}
		return c, nil // nil: the listener's own configuration
	}
	return cfg
}

func (s *site) applyServerTLS(c *tls.Config) {
	if s.clientAuth != tls.NoClientCert {
		c.ClientAuth = s.clientAuth
		c.ClientCAs = s.clientCAs
	}
}

// clientAuthOK decides whether a request to a client_auth site may go on.
// Certificates are asked for in the handshake, by SNI; a request whose Host
// names this site over a connection set up for another name (HTTP/1.1 with
// a different Host, or an HTTP/2 connection a browser reuses for several
// names) gets 421 Misdirected Request, which makes browsers retry on a new
// connection with the right SNI (RFC 9110, section 15.5.20).
func (f *front) clientAuthOK(w http.ResponseWriter, r *http.Request, s *site, table *siteTable) bool {
	if r.TLS == nil || table.match(r.TLS.ServerName) != s {
		writeError(w, s, http.StatusMisdirectedRequest, bodyMisdirected)
		return false
	}
	if s.clientAuth == tls.RequireAndVerifyClientCert && len(r.TLS.VerifiedChains) == 0 {
		writeError(w, s, http.StatusForbidden, bodyCertRequired)
		return false
	}
	return true
}

// setClientCert forwards the verified client certificate, if any.
func (s *site) setClientCert(out *http.Request, in *http.Request) {
	if s.clientAuth == tls.NoClientCert || in.TLS == nil || len(in.TLS.VerifiedChains) == 0 {
		return
	}
	out.Header[headerClientCert] = []string{base64.StdEncoding.EncodeToString(in.TLS.PeerCertificates[0].Raw)}
}
