package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/tlsmgr"
)

// buildPools gives each upstream of s its transports. For https://
// upstreams the client TLS configuration comes from tlsmgr.ClientTLSConfig
// and the site's upstream_tls keys: the chain is verified against ca_file
// (default: system roots) for server_name (default: the upstream URL's
// host; with sni_from_host, the client's Host), and against pin_sha256 when
// set. A site without upstream_tls keys uses WithUpstreamTLSConfig when that
// option is given.
func (s *site) buildPools(o *options, logger *zap.Logger) error {
	for i, u := range s.upstreams {
		key := fmt.Sprintf("upstream %s", u.raw)
		if u.url.Scheme != "https" {
			u.pool = newUpstreamPool(o, u.url, nil, nil)
			continue
		}
		var base *tls.Config
		var err error
		switch {
		case s.upstreamTLS.IsZero() && o.upstreamTLS != nil:
			base = o.upstreamTLS.Clone()
		default:
			base, err = s.clientTLS(u.url.Hostname(), logger)
		}
		if err != nil {
			return fmt.Errorf("http.sites: %s (upstreams[%d]): %w", key, i, err)
		}
		var tlsFor func(string) (*tls.Config, error)
		if s.upstreamTLS.SNIFromHost {
			tlsFor = func(name string) (*tls.Config, error) { return s.clientTLS(name, logger) }
		}
		u.pool = newUpstreamPool(o, u.url, base, tlsFor)
	}
	return nil
}

// clientTLS is the client TLS configuration verifying serverName. With
// insecure_skip_verify every new connection logs a warning, as
// docs/architecture.md ("Cross-cutting rules") asks of unverified upstreams.
func (s *site) clientTLS(serverName string, logger *zap.Logger) (*tls.Config, error) {
	cfg, err := tlsmgr.ClientTLSConfig(s.upstreamTLS.TLS(serverName), logger)
	if err != nil {
		return nil, err
	}
	if s.upstreamTLS.InsecureSkipVerify {
		log := s.log
		name := cfg.ServerName
		cfg.VerifyConnection = func(tls.ConnectionState) error {
			log.Warn("upstream certificate not verified", zap.String("server_name", name))
			return nil
		}
	}
	return cfg, nil
}

// closeIdle closes the idle upstream connections of every upstream.
func (s *site) closeIdle() {
	for _, u := range s.upstreams {
		if u.pool != nil {
			u.pool.closeIdle()
		}
	}
}

// oneShotTransport is a transport whose connection serves a single request,
// for connection-bound credentials that arrive over HTTP/2 (winauth.go).
func (p *upstreamPool) oneShotTransport(host string) (*http.Transport, error) {
	if p.tlsFor == nil || host == "" {
		return p.oneShot, nil
	}
	cfg, err := p.tlsFor(host)
	if err != nil {
		return nil, err
	}
	tr := newTransport(p.opts, cfg, nil)
	tr.DisableKeepAlives = true
	return tr, nil
}
