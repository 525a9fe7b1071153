package proxy

import (
	"fmt"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gateway-project/gateway/configs"
)

// site is one configs.Site, ready to serve.
type site struct {
	name         string // the first configured host, for logs
	hosts        []string
	upstreams    []*upstream
	next         atomic.Uint64 // round-robin cursor
	hsts         string        // Strict-Transport-Security value; "" disables
	preserveHost bool
	proxy        *httputil.ReverseProxy
}

// upstream is one server of a site.
type upstream struct {
	raw       string // as configured: safe to log, has no query or user info
	url       *url.URL
	downUntil atomic.Int64 // unix nanoseconds; skipped by pick until then
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
	s := &site{name: cfg.Hosts[0], hosts: cfg.Hosts, preserveHost: cfg.PreserveHost}
	if cfg.HSTSMaxAge > 0 {
		s.hsts = "max-age=" + strconv.FormatInt(int64(cfg.HSTSMaxAge/time.Second), 10)
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
	return s, nil
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

// pick returns the next upstream in turn, skipping those in back-off unless
// every one is.
func (s *site) pick() *upstream {
	n := uint64(len(s.upstreams))
	start := s.next.Add(1) - 1
	if n == 1 {
		return s.upstreams[0]
	}
	now := time.Now().UnixNano()
	for i := range n {
		u := s.upstreams[(start+i)%n]
		if u.downUntil.Load() <= now {
			if i > 0 {
				// Move the cursor past the skipped ones, so that the
				// next upstream does not get their share too.
				s.next.Add(i)
			}
			return u
		}
	}
	return s.upstreams[start%n]
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
