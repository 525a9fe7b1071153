package configs

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// UpstreamAddress is sql[].upstream.address taken apart. It is either a
// host and a port (`10.0.1.7:1433`, `sql01.corp.local:1433`,
// `[fd00::7]:1433`), or a host and a named instance (`sql01\SQLEXPRESS`),
// whose port that host's SQL Browser (UDP 1434) says. A host name may
// resolve to several addresses (an Always On listener across subnets):
// the gateway then dials them all at once.
type UpstreamAddress struct {
	Host     string
	Port     int    // 0 with Instance
	Instance string // "" with Port
}

// String writes the address back as configured.
func (a UpstreamAddress) String() string {
	if a.Instance != "" {
		return a.Host + `\` + a.Instance
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

// ParseUpstreamAddress parses an upstream address; its errors say what to
// write instead.
func ParseUpstreamAddress(s string) (UpstreamAddress, error) {
	if host, inst, ok := strings.Cut(s, `\`); ok {
		switch {
		case host == "":
			return UpstreamAddress{}, fmt.Errorf(`%q: missing host before the instance name; write host\INSTANCE`, s)
		case strings.ContainsAny(host, ":[]"):
			return UpstreamAddress{}, fmt.Errorf(`%q: a named instance takes no port (SQL Browser gives it); write host\INSTANCE or host:port`, s)
		case !instanceNameRE.MatchString(inst):
			return UpstreamAddress{}, fmt.Errorf("%q: %q is not an instance name (up to 16 letters, digits, _, $ or #, starting with a letter or _)", s, inst)
		}
		return UpstreamAddress{Host: host, Instance: inst}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return UpstreamAddress{}, fmt.Errorf(`%q: missing port; write host:port (e.g. %s:1433) or host\INSTANCE`, s, s)
	}
	if host == "" {
		return UpstreamAddress{}, fmt.Errorf("%q: missing host", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return UpstreamAddress{}, fmt.Errorf("%q: port must be 1-65535", s)
	}
	return UpstreamAddress{Host: host, Port: n}, nil
}

// RoutingAllowed reports whether host, a server named by a routing
// ENVCHANGE, matches one of the routing_allow patterns: a host name or IP
// address (case-insensitive, a trailing dot ignored), or `*.suffix`, which
// matches any name ending in .suffix, at any depth (Azure SQL redirects to
// names such as tr1.eastus1-a.worker.database.windows.net).
func RoutingAllowed(host string, patterns []string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" {
		return false
	}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSuffix(p, "."))
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if strings.HasPrefix(suffix, ".") && strings.HasSuffix(h, suffix) && len(h) > len(suffix) {
				return true
			}
			continue
		}
		if h == p {
			return true
		}
	}
	return false
}
