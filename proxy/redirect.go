package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// redirector answers every plain-HTTP request with a permanent redirect to
// the same host, path and query over HTTPS. 308 rather than 301 so that a
// POST stays a POST with its body (RFC 9110, section 15.4.9).
type redirector struct {
	port         string // HTTPS port for the Location; "" for 443
	fallbackHost string // for requests without a Host header; "" answers 400
}

func newRedirector(httpsPort int, sites []*site) *redirector {
	rd := &redirector{}
	if httpsPort != 443 && httpsPort > 0 {
		rd.port = strconv.Itoa(httpsPort)
	}
	// The first site's first plain name; a wildcard is not a host.
	for _, s := range sites {
		for _, h := range s.hosts {
			if !strings.HasPrefix(h, "*.") {
				rd.fallbackHost = strings.TrimSuffix(h, ".")
				return rd
			}
		}
	}
	return rd
}

func (rd *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := rd.fallbackHost
	if r.Host != "" {
		host = hostOnly(r.Host)
		if !validHost(host) {
			http.Error(w, "400 Bad Request: invalid Host header.", http.StatusBadRequest)
			return
		}
	}
	if host == "" {
		http.Error(w, "400 Bad Request: missing Host header.", http.StatusBadRequest)
		return
	}
	if rd.port != "" {
		host = net.JoinHostPort(host, rd.port)
	} else if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	uri := r.URL.RequestURI() // escaped path and raw query, as the client sent them
	if !strings.HasPrefix(uri, "/") {
		uri = "/" // "OPTIONS *" and other oddities
	}
	http.Redirect(w, r, "https://"+host+uri, http.StatusPermanentRedirect)
}

// validHost reports whether h can be put into a Location as a host: an IP
// address or a DNS name made of letters, digits, '-', '_' and dots. Go's
// server accepts more in a Host header ("$", "%", "'", ...), none of which
// belongs in a name we redirect to.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.IndexByte(h, ':') >= 0 { // IPv6; IPv4 passes the loop below
		a, err := netip.ParseAddr(h)
		return err == nil && a.Zone() == "" // a zone is meaningless to the client
	}
	if h[0] == '.' || h[0] == '-' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
