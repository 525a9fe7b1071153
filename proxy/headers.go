package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gateway-project/gateway/configs"
)

// responseRewriter makes a legacy application's responses right for HTTPS
// without changing the application:
//
//   - Location, Content-Location and Refresh URLs that point at one of the
//     upstream's own origins (the upstream URLs and internal_names), or at
//     the public name over plain http (what ASP.NET builds from the Host it
//     was sent, on a plain-HTTP binding), become https://<client's Host>;
//   - Set-Cookie gets Secure, optionally HttpOnly and SameSite;
//   - optionally Content-Security-Policy: upgrade-insecure-requests.
//
// Values that need no change are left as they are, without allocating.
type responseRewriter struct {
	location       bool
	origins        []origin
	cookieSecure   bool
	cookieHTTPOnly bool
	sameSite       string // "", "Lax", "Strict" or "None"
	csp            bool
}

// origin is one scheme://host:port the upstream may call itself.
type origin struct {
	scheme string // "http" or "https"; "" matches both
	host   string // lowercase
	port   string // "" matches any port
	prefix string // path prefix of an upstream URL, dropped from rewritten URLs
}

// sameSiteAttr spells each cookie_same_site value as the attribute; ""
// leaves cookies as the application sets them.
var sameSiteAttr = map[configs.SameSite]string{
	configs.SameSiteLax:    "Lax",
	configs.SameSiteStrict: "Strict",
	configs.SameSiteNone:   "None",
}

func newResponseRewriter(cfg configs.Site, ups []*upstream) (responseRewriter, error) {
	rw := responseRewriter{
		location:       cfg.RewriteLocation,
		cookieSecure:   cfg.CookieSecure,
		cookieHTTPOnly: cfg.CookieHTTPOnly,
		csp:            cfg.UpgradeInsecureRequests,
	}
	if !cfg.CookieSameSite.Valid() {
		return rw, fmt.Errorf("cookie_same_site: unknown value %q", cfg.CookieSameSite)
	}
	rw.sameSite = sameSiteAttr[cfg.CookieSameSite]
	for _, u := range ups {
		rw.origins = append(rw.origins, origin{
			scheme: u.url.Scheme,
			host:   strings.ToLower(u.url.Hostname()),
			port:   portOrDefault(u.url.Port(), u.url.Scheme),
			prefix: strings.TrimSuffix(u.url.Path, "/"),
		})
	}
	for _, n := range cfg.InternalNames {
		o, err := parseInternalName(n)
		if err != nil {
			return rw, err
		}
		rw.origins = append(rw.origins, o)
	}
	return rw, nil
}

// parseInternalName reads "iis01.corp.local", "iis01:8080" or
// "http://iis01:8080".
func parseInternalName(n string) (origin, error) {
	if strings.Contains(n, "://") {
		u, err := url.Parse(n)
		if err != nil || u.Hostname() == "" {
			return origin{}, fmt.Errorf("internal_names: %q is not an origin", n)
		}
		return origin{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: portOrDefault(u.Port(), u.Scheme)}, nil
	}
	if h, p, err := net.SplitHostPort(n); err == nil {
		return origin{host: strings.ToLower(h), port: p}, nil
	}
	return origin{host: strings.ToLower(strings.Trim(n, "[]"))}, nil
}

func portOrDefault(port, scheme string) string {
	if port != "" {
		return port
	}
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

func (rw *responseRewriter) rewritesCookies() bool {
	return rw.cookieSecure || rw.cookieHTTPOnly || rw.sameSite != ""
}

// rewrite applies the rewriter to a response's headers; clientHost is the
// Host the client asked for, which becomes the origin of rewritten URLs.
func (rw *responseRewriter) rewrite(h http.Header, clientHost string) {
	if rw.location && validPublicHost(clientHost) {
		for _, k := range [...]string{"Location", "Content-Location"} {
			vs := h[k]
			for i, v := range vs {
				if nv, ok := rw.rewriteURL(v, clientHost); ok {
					vs[i] = nv
				}
			}
		}
		vs := h["Refresh"]
		for i, v := range vs {
			if nv, ok := rw.rewriteRefresh(v, clientHost); ok {
				vs[i] = nv
			}
		}
	}
	if rw.rewritesCookies() {
		vs := h["Set-Cookie"]
		for i, v := range vs {
			if nv, ok := rw.rewriteCookie(v); ok {
				vs[i] = nv
			}
		}
	}
	if rw.csp {
		h["Content-Security-Policy"] = append(h["Content-Security-Policy"], "upgrade-insecure-requests")
	}
}

// rewriteURL maps an absolute (or scheme-relative) URL on an upstream
// origin to https://clientHost, keeping path, query and fragment.
func (rw *responseRewriter) rewriteURL(v, clientHost string) (string, bool) {
	scheme, host, port, rest, ok := splitAbsolute(v)
	if !ok {
		return v, false
	}
	prefix, ok := rw.match(scheme, host, port, clientHost)
	if !ok {
		return v, false
	}
	if prefix != "" && strings.HasPrefix(rest, prefix) &&
		(len(rest) == len(prefix) || strings.IndexByte("/?#", rest[len(prefix)]) >= 0) {
		rest = rest[len(prefix):]
	}
	var b strings.Builder
	b.Grow(len("https://") + len(clientHost) + len(rest) + 1)
	b.WriteString("https://")
	b.WriteString(clientHost)
	if rest == "" || rest[0] != '/' {
		b.WriteByte('/')
	}
	b.WriteString(rest)
	return b.String(), true
}

// match reports whether scheme://host:port is one of the upstream's
// origins (returning its path prefix), or the client's own host over http.
func (rw *responseRewriter) match(scheme, host, port, clientHost string) (string, bool) {
	effPort := port
	if effPort == "" {
		effPort = portOrDefault("", scheme)
	}
	for i := range rw.origins {
		o := &rw.origins[i]
		if o.scheme != "" && scheme != "" && o.scheme != scheme {
			continue
		}
		if !strings.EqualFold(o.host, host) {
			continue
		}
		if o.port != "" && effPort != "" && o.port != effPort {
			continue
		}
		return o.prefix, true
	}
	if scheme == "http" && strings.EqualFold(host, hostOnly(clientHost)) {
		return "", true
	}
	return "", false
}

// splitAbsolute splits "http://host:port/rest", "https://..." and
// "//host/rest". ok is false for relative URLs and for URLs with user
// info, which are left alone.
func splitAbsolute(v string) (scheme, host, port, rest string, ok bool) {
	switch {
	case len(v) >= 7 && strings.EqualFold(v[:7], "http://"):
		scheme, v = "http", v[7:]
	case len(v) >= 8 && strings.EqualFold(v[:8], "https://"):
		scheme, v = "https", v[8:]
	case strings.HasPrefix(v, "//"):
		v = v[2:]
	default:
		return "", "", "", "", false
	}
	end := strings.IndexAny(v, "/?#")
	if end < 0 {
		end = len(v)
	}
	authority, rest := v[:end], v[end:]
	if authority == "" || strings.IndexByte(authority, '@') >= 0 {
		return "", "", "", "", false
	}
	host = authority
	if strings.HasPrefix(authority, "[") {
		i := strings.IndexByte(authority, ']')
		if i < 0 {
			return "", "", "", "", false
		}
		host = authority[1:i]
		if p, found := strings.CutPrefix(authority[i+1:], ":"); found {
			port = p
		}
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
	}
	return scheme, host, port, rest, host != ""
}

// rewriteRefresh rewrites the URL of a Refresh value such as
// "0; url=http://iis01/next.aspx" (quotes allowed around the URL).
func (rw *responseRewriter) rewriteRefresh(v, clientHost string) (string, bool) {
	i := indexFold(v, "url=")
	if i < 0 {
		return v, false
	}
	head, u := v[:i+len("url=")], strings.TrimSpace(v[i+len("url="):])
	quote := ""
	if len(u) >= 2 && (u[0] == '\'' || u[0] == '"') && u[len(u)-1] == u[0] {
		quote, u = u[:1], u[1:len(u)-1]
	}
	nu, ok := rw.rewriteURL(u, clientHost)
	if !ok {
		return v, false
	}
	return head + quote + nu + quote, true
}

// indexFold is strings.Index ignoring ASCII case, for a lowercase sub.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// rewriteCookie adds Secure and HttpOnly where configured and missing, and
// sets SameSite when configured (replacing the application's).
func (rw *responseRewriter) rewriteCookie(v string) (string, bool) {
	hasSecure, hasHTTPOnly := false, false
	ssStart, ssEnd := -1, -1 // the existing SameSite attribute, from its ';'
	sameSiteOK := rw.sameSite == ""
	for i := strings.IndexByte(v, ';'); i >= 0; {
		end := len(v)
		if j := strings.IndexByte(v[i+1:], ';'); j >= 0 {
			end = i + 1 + j
		}
		name, value, _ := strings.Cut(strings.TrimSpace(v[i+1:end]), "=")
		name = strings.TrimSpace(name)
		switch {
		case strings.EqualFold(name, "Secure"):
			hasSecure = true
		case strings.EqualFold(name, "HttpOnly"):
			hasHTTPOnly = true
		case strings.EqualFold(name, "SameSite"):
			ssStart, ssEnd = i, end
			if strings.EqualFold(strings.TrimSpace(value), rw.sameSite) {
				sameSiteOK = true
			}
		}
		if end == len(v) {
			break
		}
		i = end
	}
	needSecure := rw.cookieSecure && !hasSecure
	needHTTPOnly := rw.cookieHTTPOnly && !hasHTTPOnly
	if !needSecure && !needHTTPOnly && sameSiteOK {
		return v, false
	}
	var b strings.Builder
	b.Grow(len(v) + len("; Secure; HttpOnly; SameSite=Strict"))
	if !sameSiteOK && ssStart >= 0 {
		b.WriteString(v[:ssStart])
		b.WriteString(v[ssEnd:])
	} else {
		b.WriteString(v)
	}
	if needSecure {
		b.WriteString("; Secure")
	}
	if needHTTPOnly {
		b.WriteString("; HttpOnly")
	}
	if !sameSiteOK {
		b.WriteString("; SameSite=")
		b.WriteString(rw.sameSite)
	}
	return b.String(), true
}

// validPublicHost reports whether a client's Host (host or host:port) can
// go into a rewritten URL.
func validPublicHost(hostport string) bool {
	h := hostOnly(hostport)
	if !validHost(h) {
		return false
	}
	if strings.HasPrefix(hostport, "[") {
		rest := hostport[strings.IndexByte(hostport, ']')+1:]
		return rest == "" || (rest[0] == ':' && allDigits(rest[1:]))
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && h != hostport {
		return allDigits(hostport[i+1:])
	}
	return true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
