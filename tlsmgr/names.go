package tlsmgr

import (
	"crypto/x509"
	"net/netip"
	"strings"
)

// normalizeName makes names from config, SNI and certificates comparable:
// lower case, no surrounding space, trailing dot or IPv6 brackets, and IP
// addresses in canonical form (IPv4-mapped IPv6 becomes IPv4).
func normalizeName(name string) string {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if strings.HasPrefix(n, "[") && strings.HasSuffix(n, "]") {
		n = n[1 : len(n)-1]
	}
	if ip, err := netip.ParseAddr(n); err == nil {
		return ip.Unmap().String()
	}
	return n
}

// isIP reports whether a normalized name is an IP address.
func isIP(name string) bool {
	_, err := netip.ParseAddr(name)
	return err == nil
}

// wildcardOf returns the wildcard name that covers a normalized host name
// ("app.example.com" -> "*.example.com"), or "" for IP addresses and
// single-label names. Only the left-most label is replaced (RFC 6125 6.4.3).
func wildcardOf(name string) string {
	if isIP(name) {
		return ""
	}
	i := strings.IndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return ""
	}
	return "*" + name[i:]
}

// certNames lists the normalized names a certificate is valid for: its DNS
// and IP subject alternative names, or its common name when it has none
// (legacy certificates; modern clients ignore the common name).
func certNames(leaf *x509.Certificate) []string {
	seen := map[string]bool{}
	var names []string
	add := func(n string) {
		n = normalizeName(n)
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, n := range leaf.DNSNames {
		add(n)
	}
	for _, ip := range leaf.IPAddresses {
		add(ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		add(leaf.Subject.CommonName)
	}
	return names
}

// normalizeNames normalizes and de-duplicates names, keeping their order and
// dropping empty ones.
func normalizeNames(in []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for _, n := range in {
		n = normalizeName(n)
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// operatorSet is an immutable index of the loaded operator certificates;
// reloading builds a new one and swaps it in.
type operatorSet struct {
	certs  []*operatorCert          // in tls.certificates order
	byName map[string]*operatorCert // exact names and "*.domain" wildcards
}

// newOperatorSet indexes certs; when two certificates share a name, the one
// listed first in tls.certificates wins.
func newOperatorSet(certs []*operatorCert) *operatorSet {
	s := &operatorSet{certs: certs, byName: map[string]*operatorCert{}}
	for _, c := range certs {
		for _, n := range c.names {
			if _, dup := s.byName[n]; !dup {
				s.byName[n] = c
			}
		}
	}
	return s
}

// lookup returns the operator certificate for a normalized name: an exact
// match first, then a wildcard one; nil if none covers it.
func (s *operatorSet) lookup(name string) *operatorCert {
	if s == nil || name == "" {
		return nil
	}
	if c := s.byName[name]; c != nil {
		return c
	}
	if w := wildcardOf(name); w != "" {
		return s.byName[w]
	}
	return nil
}
