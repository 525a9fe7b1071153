package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// site is one configs.Site, ready to serve. newSite fills in what comes
// from the configuration alone; Server.New adds transports, TLS and the
// reverse proxy.
type site struct {
	cfg          configs.Site // as configured: a reload keeps the site when it is unchanged
	name         string       // the first configured host, for logs and metrics
	hosts        []string
	upstreams    []*upstream
	next         atomic.Uint64 // round-robin cursor
	hsts         string        // Strict-Transport-Security value; "" disables
	preserveHost bool
	proxy        *httputil.ReverseProxy
	log          *zap.Logger
	metrics      *Metrics // nil: none
	// series are the site's request series in the front's metrics, bound
	// at its first request.
	series      atomic.Pointer[siteMetrics]
	accessQuery bool // access_log_query

	// checkCancel stops the site's health checks; nil when none run.
	checkCancel context.CancelFunc

	// windowsAuth pins client connections that start NTLM or Negotiate
	// to a dedicated upstream connection (winauth.go).
	windowsAuth bool
	// http2 is the site's http2 mode, never "" (http2.go). h1Only is set
	// while only HTTP/1.1 is offered for the site's names: from the start
	// with off, and with auto once the site shows Windows authentication,
	// which http1 then records (nil outside a Server). probed, when not
	// nil, is closed when the site's first probe has ended.
	http2      configs.HTTP2Mode
	h1Only     atomic.Bool
	http1      *http1Names
	probed     chan struct{}
	probedOnce sync.Once

	rewriter       responseRewriter
	requestHeaders http.Header // canonical names; set on every upstream request
	maxBody        int64       // 0: no limit

	leastConn bool
	sticky    string // cookie name; "" disables
	health    configs.HealthCheck
	passive   configs.PassiveHealth
	checkHost string // Host of health checks and probes; "" sends the upstream's

	upstreamTLS configs.SiteUpstreamTLS
	clientAuth  tls.ClientAuthType // tls.NoClientCert unless client_auth is set
	clientCAs   *x509.CertPool
	// tlsH2 and tlsH1 are the server TLS configurations handed out by
	// GetConfigForClient for the site's names: with client authentication
	// if configured, and (tlsH1) without h2 in ALPN. Nil when not needed.
	tlsH2, tlsH1 *tls.Config
}

// upstream is one server of a site.
type upstream struct {
	raw string // as configured: safe to log, has no query or user info
	url *url.URL
	// id names the upstream in sticky cookies: an HMAC of raw, so that the
	// cookie does not reveal the internal address.
	id string

	// Health: the upstream is skipped by pick while activeDown is set or
	// until downUntil (unix nanoseconds); fails counts passive failures in
	// a row.
	downUntil  atomic.Int64
	fails      atomic.Int32
	activeDown atomic.Bool
	inflight   atomic.Int64 // requests in progress, for least_conn

	pool *upstreamPool // transports; nil until Server.New builds them
}

// siteTable selects the site for a request's Host.
type siteTable struct {
	exact    map[string]*site
	wildcard map[string]*site // "*.example.com" is stored under "example.com"
	def      *site
}

// newSite builds a site from its configuration. It re-checks only what would
// otherwise make the proxy misbehave (configs.Validate checks the rest).
func newSite(i int, cfg configs.Site) (*site, error) {
	key := fmt.Sprintf("http.sites[%d]", i)
	if len(cfg.Hosts) == 0 {
		return nil, fmt.Errorf("%s.hosts: no host name", key)
	}
	if len(cfg.Upstreams) == 0 {
		return nil, fmt.Errorf("%s.upstreams: no upstream", key)
	}
	s := &site{
		cfg:          cfg,
		accessQuery:  cfg.AccessLogQuery,
		name:         cfg.Hosts[0],
		hosts:        cfg.Hosts,
		preserveHost: cfg.PreserveHost,
		log:          zap.NewNop(),
		windowsAuth:  cfg.WindowsAuth,
		http2:        cfg.HTTP2,
		maxBody:      cfg.MaxRequestBody,
		leastConn:    cfg.LoadBalancing == configs.LoadBalancingLeastConn,
		sticky:       cfg.Sticky.Cookie,
		health:       cfg.HealthCheck,
		passive:      cfg.PassiveHealth,
		upstreamTLS:  cfg.UpstreamTLS,
	}
	if cfg.HSTSMaxAge > 0 {
		s.hsts = "max-age=" + strconv.FormatInt(int64(cfg.HSTSMaxAge/time.Second), 10)
	}
	if !cfg.LoadBalancing.Valid() {
		return nil, fmt.Errorf("%s.load_balancing: unknown policy %q", key, cfg.LoadBalancing)
	}
	if !cfg.HTTP2.Valid() {
		return nil, fmt.Errorf("%s.http2: unknown mode %q", key, cfg.HTTP2)
	}
	if s.http2 == "" {
		s.http2 = configs.HTTP2Auto
	}
	for j, raw := range cfg.Upstreams {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s.upstreams[%d]: %w", key, j, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s.upstreams[%d]: %q is not an http:// or https:// URL with a host", key, j, raw)
		}
		s.upstreams = append(s.upstreams, &upstream{raw: raw, url: u})
	}
	if len(cfg.RequestHeaders) > 0 {
		s.requestHeaders = make(http.Header, len(cfg.RequestHeaders))
		for k, v := range cfg.RequestHeaders {
			s.requestHeaders[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
		}
	}
	if s.preserveHost {
		s.checkHost = firstPlainHost(s.hosts)
	}
	rw, err := newResponseRewriter(cfg, s.upstreams)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	s.rewriter = rw
	return s, nil
}

// firstPlainHost is the first host that is not a wildcard, or "".
func firstPlainHost(hosts []string) string {
	for _, h := range hosts {
		if !strings.HasPrefix(h, "*.") {
			return strings.TrimSuffix(h, ".")
		}
	}
	return ""
}

// newSiteTable indexes sites by host. The first site is the default. When two
// sites claim the same name (configs rejects that) the first one wins.
func newSiteTable(sites []*site) *siteTable {
	t := &siteTable{exact: map[string]*site{}, wildcard: map[string]*site{}, def: sites[0]}
	for _, s := range sites {
		for _, h := range s.hosts {
			h = canonicalHost(h)
			m := t.exact
			if parent, ok := strings.CutPrefix(h, "*."); ok {
				m, h = t.wildcard, parent
			}
			if _, dup := m[h]; !dup && h != "" {
				m[h] = s
			}
		}
	}
	return t
}

// match returns the site for a Host header value (host or host:port):
// an exact name first, then a wildcard covering exactly one more label
// (*.example.com matches a.example.com, not a.b.example.com nor
// example.com), then the default site. Names compare case-insensitively and
// without a trailing dot.
func (t *siteTable) match(hostport string) *site {
	h := canonicalHost(hostOnly(hostport))
	if h == "" {
		return t.def
	}
	if s, ok := t.exact[h]; ok {
		return s
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if s, ok := t.wildcard[h[i+1:]]; ok {
			return s
		}
	}
	return t.def
}

// hostOnly strips the port from a Host header value: "a.example.com:8443",
// "[::1]:443" and "[::1]" give "a.example.com", "::1" and "::1". A value it
// cannot make sense of (an unclosed bracket) gives "".
func hostOnly(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
		return ""
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.IndexByte(hostport, ':') == i {
		return hostport[:i]
	}
	return hostport // no port, or a bare IPv6 address
}

// canonicalHost lowercases a host name and drops a trailing dot; IPv6
// addresses get their canonical text form so that ::01 matches ::1.
func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.IndexByte(h, ':') >= 0 {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.String()
		}
	}
	return h
}
