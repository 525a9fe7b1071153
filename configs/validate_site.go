package configs

import (
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// reservedRequestHeaders are set by the gateway itself or describe the
// connection; request_headers may not replace them.
var reservedRequestHeaders = map[string]string{
	"Host":              "the gateway sends the client's Host, or the upstream's with preserve_host: false",
	"Connection":        "hop-by-hop header",
	"Keep-Alive":        "hop-by-hop header",
	"Te":                "hop-by-hop header",
	"Trailer":           "hop-by-hop header",
	"Transfer-Encoding": "hop-by-hop header",
	"Upgrade":           "hop-by-hop header",
	"Content-Length":    "describes the client's body",
	"X-Forwarded-For":   "the gateway sets it to the client's address",
	"X-Forwarded-Host":  "the gateway sets it to the client's Host",
	"X-Forwarded-Proto": "the gateway sets it to https",
	"X-Arr-Clientcert":  "the gateway sets it from the verified client certificate (client_auth)",
	"Authorization":     "it carries the user's credentials",
	"Cookie":            "it carries the user's session",
}

// validateExtras checks the keys of a site beyond hosts and upstreams.
func (s *Site) validateExtras(ps *problems, key string) {
	for j, n := range s.InternalNames {
		if msg := checkInternalName(n); msg != "" {
			ps.add(key+".internal_names["+strconv.Itoa(j)+"]", "%s", msg)
		}
	}
	checkEnum(ps, key+".http2", s.HTTP2, http2Modes)
	checkEnum(ps, key+".cookie_same_site", s.CookieSameSite, sameSites)
	if s.CookieSameSite == SameSiteNone && !s.CookieSecure {
		ps.add(key+".cookie_same_site", "none needs cookie_secure: true (browsers drop SameSite=None cookies without Secure)")
	}
	for name, value := range s.RequestHeaders {
		hk := key + ".request_headers." + name
		canon := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !validToken(name):
			ps.add(hk, "%q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		case reservedRequestHeaders[canon] != "":
			ps.add(hk, "%s cannot be set here: %s", canon, reservedRequestHeaders[canon])
		case strings.ContainsAny(value, "\r\n\x00"):
			ps.add(hk, "the value must not contain CR, LF or NUL")
		}
	}
	if s.MaxRequestBody < 0 {
		ps.add(key+".max_request_body", "must not be negative; 0 means no limit")
	}
	checkEnum(ps, key+".load_balancing", s.LoadBalancing, loadBalancings)
	if c := s.Sticky.Cookie; c != "" && !validToken(c) {
		ps.add(key+".sticky.cookie", "%q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~)", c)
	}
	if hc := s.HealthCheck; hc.Path != "" {
		hk := key + ".health_check"
		if !strings.HasPrefix(hc.Path, "/") {
			ps.add(hk+".path", "%q must start with /, e.g. /healthcheck.aspx", hc.Path)
		}
		if hc.Interval <= 0 {
			ps.add(hk+".interval", "must be positive, e.g. 10s")
		}
		if hc.Timeout <= 0 {
			ps.add(hk+".timeout", "must be positive, e.g. 5s")
		}
		if hc.ExpectStatus < 100 || hc.ExpectStatus > 599 {
			ps.add(hk+".expect_status", "is %d; use an HTTP status such as 200", hc.ExpectStatus)
		}
	}
	if ph := s.PassiveHealth; ph.MaxFails < 0 {
		ps.add(key+".passive_health.max_fails", "must not be negative; 0 disables passive health checks")
	} else if ph.MaxFails > 0 && ph.FailTimeout <= 0 {
		ps.add(key+".passive_health.fail_timeout", "must be positive when max_fails is set, e.g. 30s")
	}
	s.UpstreamTLS.validate(ps, key+".upstream_tls")
	s.ClientAuth.validate(ps, key+".client_auth")
}

func (u *SiteUpstreamTLS) validate(ps *problems, key string) {
	if u.CAFile != "" {
		checkFile(ps, key+".ca_file", u.CAFile)
	}
	if u.PinSHA256 != "" {
		if _, err := ParsePin(u.PinSHA256); err != nil {
			ps.add(key+".pin_sha256", "%v", err)
		}
	}
	if u.InsecureSkipVerify && (u.PinSHA256 != "" || u.CAFile != "") {
		ps.add(key+".insecure_skip_verify", "contradicts ca_file/pin_sha256; remove insecure_skip_verify to verify the upstream")
	}
	if u.ServerName != "" {
		if msg := checkHostName(u.ServerName, false); msg != "" {
			ps.add(key+".server_name", "%s", msg)
		} else if u.SNIFromHost {
			ps.add(key+".server_name", "contradicts sni_from_host: true (the client's Host is the server name); remove one")
		}
	}
}

func (c *ClientAuth) validate(ps *problems, key string) {
	checkEnum(ps, key+".mode", c.Mode, clientAuthModes)
	switch c.Mode {
	case "", ClientAuthNone:
		if c.CAFile != "" {
			ps.add(key+".ca_file", "has no effect while mode is none; set mode: optional or required")
		}
	case ClientAuthOptional, ClientAuthRequired:
		if c.CAFile == "" {
			ps.add(key+".ca_file", "missing; name the PEM file of the CA that issues client certificates")
		} else {
			checkFile(ps, key+".ca_file", c.CAFile)
		}
	}
}

// checkInternalName accepts a host name or IP address, host:port, or an
// http(s)://host[:port] origin with no path.
func checkInternalName(n string) string {
	if strings.Contains(n, "://") {
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "\"" + n + "\" must be a host name or an http(s)://host[:port] origin"
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "\"" + n + "\": an origin has no path, query or user info"
		}
		if p := u.Port(); p != "" && !validPort(p) {
			return "\"" + n + "\": port must be 1-65535"
		}
		return checkHostName(u.Hostname(), false)
	}
	host := n
	if h, p, err := net.SplitHostPort(n); err == nil {
		if !validPort(p) {
			return "\"" + n + "\": port must be 1-65535"
		}
		host = h
	}
	return checkHostName(host, false)
}

// validToken reports whether s is an RFC 9110 token (header and cookie names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
