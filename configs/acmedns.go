package configs

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"
)

// ACMEDNS configures the ACME DNS-01 challenge (RFC 8555 section 8.4): the
// gateway publishes a TXT record under _acme-challenge.NAME through a DNS
// provider, so the CA never has to connect to the gateway. It is the only
// challenge that can prove control of a wildcard name, and the one that
// works for names that resolve to private addresses.
type ACMEDNS struct {
	// Provider is "" (no DNS-01), rfc2136 or route53.
	Provider DNSProvider `mapstructure:"provider"`

	// rfc2136: the primary server that accepts dynamic updates (host:port),
	// and the TSIG key that signs them. An empty TSIGKeyName sends unsigned
	// updates (a Windows DNS zone that allows non-secure updates).
	Server        string        `mapstructure:"server"`
	TSIGKeyName   string        `mapstructure:"tsig_key_name"`
	TSIGAlgorithm TSIGAlgorithm `mapstructure:"tsig_algorithm"` // "" means hmac-sha256
	// TSIGSecretEnv names the environment variable holding the base64 TSIG
	// secret; the secret itself never appears in a file.
	TSIGSecretEnv string `mapstructure:"tsig_secret_env"`

	// Zone is the zone the records are written to; "" finds it with an SOA
	// lookup.
	Zone string `mapstructure:"zone"`

	// route53: the hosted zone ("" finds it from the name with
	// ListHostedZonesByName) and the region given to the AWS SDK ("" uses
	// the SDK's own configuration, else us-east-1: Route 53 is global).
	HostedZoneID string `mapstructure:"hosted_zone_id"`
	Region       string `mapstructure:"region"`

	// PropagationTimeout bounds the wait for the record to be visible to
	// Resolvers before the CA is asked to look (Load's default: 2m).
	PropagationTimeout time.Duration `mapstructure:"propagation_timeout"`
	// Resolvers are the DNS servers (host or host:port) asked for the
	// zone's SOA and for the record while waiting; empty means the system's
	// resolvers, then every authoritative server of the zone.
	Resolvers []string `mapstructure:"resolvers"`
}

// ACMEEAB is an external account binding: the key identifier and the MAC
// key (named by an environment variable) a CA such as ZeroSSL, Google
// Trust Services or a private step-ca gives out with the account.
type ACMEEAB struct {
	KeyID     string `mapstructure:"key_id"`
	MACKeyEnv string `mapstructure:"mac_key_env"`
}

// Enabled reports whether DNS-01 is configured.
func (d ACMEDNS) Enabled() bool { return d.Provider != "" }

// Algorithm is TSIGAlgorithm with "" meaning hmac-sha256.
func (d ACMEDNS) Algorithm() TSIGAlgorithm {
	if d.TSIGAlgorithm == "" {
		return TSIGHMACSHA256
	}
	return d.TSIGAlgorithm
}

// TSIGSecret reads the base64 TSIG secret from the environment variable
// TSIGSecretEnv and returns it still base64-encoded, as DNS libraries and
// BIND's key files take it; the error names the variable, never the value.
func (d ACMEDNS) TSIGSecret() (string, error) {
	val, ok := os.LookupEnv(d.TSIGSecretEnv)
	if !ok || strings.TrimSpace(val) == "" {
		return "", fmt.Errorf("environment variable %s is not set; export the base64 TSIG secret in it (the secret line of the key in named.conf)", d.TSIGSecretEnv)
	}
	val = strings.TrimSpace(val)
	if _, err := base64.StdEncoding.DecodeString(val); err != nil {
		return "", fmt.Errorf("environment variable %s does not hold base64 (the secret line of the key in named.conf, or tsig-keygen's output)", d.TSIGSecretEnv)
	}
	return val, nil
}

// ResolverAddrs returns Resolvers as host:port, with port 53 where none
// is given.
func (d ACMEDNS) ResolverAddrs() []string {
	out := make([]string, 0, len(d.Resolvers))
	for _, r := range d.Resolvers {
		out = append(out, withDNSPort(r))
	}
	return out
}

// HostedZone is HostedZoneID without the "/hostedzone/" prefix the Route
// 53 API and console sometimes print.
func (d ACMEDNS) HostedZone() string { return strings.TrimPrefix(d.HostedZoneID, "/hostedzone/") }

// Enabled reports whether an external account binding is configured.
func (e ACMEEAB) Enabled() bool { return e.KeyID != "" || e.MACKeyEnv != "" }

// MACKey reads the MAC key from the environment variable MACKeyEnv and
// returns it base64url-encoded without padding (RFC 8555 section 7.3.4),
// accepting the padded and standard base64 forms CAs also hand out.
func (e ACMEEAB) MACKey() (string, error) {
	val, ok := os.LookupEnv(e.MACKeyEnv)
	val = strings.TrimSpace(val)
	if !ok || val == "" {
		return "", fmt.Errorf("environment variable %s is not set; export the EAB MAC key the CA gave you in it", e.MACKeyEnv)
	}
	val = strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(val, "="))
	if _, err := base64.RawURLEncoding.DecodeString(val); err != nil {
		return "", fmt.Errorf("environment variable %s does not hold a base64url MAC key", e.MACKeyEnv)
	}
	return val, nil
}

var (
	hostedZoneRE = regexp.MustCompile(`^Z[A-Z0-9]{1,32}$`)
	regionRE     = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// validate checks tls.acme.dns; it runs only when tls.issuer is acme.
func (d ACMEDNS) validate(ps *problems) {
	const key = "tls.acme.dns"
	checkEnum(ps, key+".provider", d.Provider, dnsProviders)
	if !d.Enabled() {
		return
	}
	onlyFor := func(field, value string, provider DNSProvider) {
		if value != "" && d.Provider != provider {
			ps.add(key+"."+field, "only applies to provider %s, not %s", provider, d.Provider)
		}
	}
	switch d.Provider {
	case DNSProviderRFC2136:
		if d.Server == "" {
			ps.add(key+".server", "missing; the DNS server that accepts dynamic updates for the zone, as host:port (e.g. ns1.clinic.example:53)")
		} else if host, port, err := net.SplitHostPort(d.Server); err != nil || host == "" || !validPort(port) || port == "0" {
			ps.add(key+".server", "%q is not host:port; write e.g. 10.0.0.53:53 or ns1.clinic.example:53", d.Server)
		} else if net.ParseIP(host) == nil && checkHostName(host, false) != "" {
			ps.add(key+".server", "%q: host must be an IP address or a name", d.Server)
		}
		checkEnum(ps, key+".tsig_algorithm", d.TSIGAlgorithm, tsigAlgorithms)
		switch {
		case d.TSIGKeyName == "" && d.TSIGSecretEnv != "":
			ps.add(key+".tsig_key_name", "missing; tsig_secret_env is set, so name the key too (as in named.conf: key \"NAME\" { ... })")
		case d.TSIGKeyName != "" && d.TSIGSecretEnv == "":
			ps.add(key+".tsig_secret_env", "missing; name the environment variable that holds the base64 secret of key %s", d.TSIGKeyName)
		case d.TSIGKeyName != "":
			if msg := checkHostName(d.TSIGKeyName, false); msg != "" {
				ps.add(key+".tsig_key_name", "%q is not a valid key name (a DNS name, as in named.conf)", d.TSIGKeyName)
			}
			if _, err := d.TSIGSecret(); err != nil {
				ps.add(key+".tsig_secret_env", "%v", err)
			}
		}
	case DNSProviderRoute53:
		if id := d.HostedZone(); d.HostedZoneID != "" && !hostedZoneRE.MatchString(id) {
			ps.add(key+".hosted_zone_id", "%q is not a Route 53 hosted zone ID (e.g. Z0123456789ABCDEFGHIJ)", d.HostedZoneID)
		}
		if d.Region != "" && !regionRE.MatchString(d.Region) {
			ps.add(key+".region", "%q is not an AWS region (e.g. us-east-1)", d.Region)
		}
	}
	onlyFor("server", d.Server, DNSProviderRFC2136)
	onlyFor("tsig_key_name", d.TSIGKeyName, DNSProviderRFC2136)
	onlyFor("tsig_secret_env", d.TSIGSecretEnv, DNSProviderRFC2136)
	onlyFor("hosted_zone_id", d.HostedZoneID, DNSProviderRoute53)
	onlyFor("region", d.Region, DNSProviderRoute53)
	if d.Zone != "" {
		if msg := checkHostName(d.Zone, false); msg != "" || net.ParseIP(d.Zone) != nil {
			ps.add(key+".zone", "%q is not a DNS zone name (e.g. clinic.example)", d.Zone)
		}
	}
	switch pt := d.PropagationTimeout; {
	case pt <= 0:
		ps.add(key+".propagation_timeout", "is %s; must be positive (default 2m)", pt)
	case pt > time.Hour:
		ps.add(key+".propagation_timeout", "is %s; use at most 1h (the CA's order would expire first)", pt)
	}
	for i, r := range d.Resolvers {
		host, port, err := net.SplitHostPort(withDNSPort(r))
		if err != nil || host == "" || !validPort(port) || port == "0" || (net.ParseIP(host) == nil && checkHostName(host, false) != "") {
			ps.add(fmt.Sprintf("%s.resolvers[%d]", key, i), "%q is not a DNS server; write an address or host:port, e.g. 10.0.0.53 or 10.0.0.53:5353", r)
		}
	}
}

// validate checks tls.acme.eab; it runs only when tls.issuer is acme.
func (e ACMEEAB) validate(ps *problems) {
	const key = "tls.acme.eab"
	switch {
	case !e.Enabled():
	case e.KeyID == "":
		ps.add(key+".key_id", "missing; mac_key_env is set, so give the key identifier the CA issued with the MAC key")
	case e.MACKeyEnv == "":
		ps.add(key+".mac_key_env", "missing; name the environment variable that holds the MAC key for key_id %s", e.KeyID)
	default:
		if _, err := e.MACKey(); err != nil {
			ps.add(key+".mac_key_env", "%v", err)
		}
	}
}

// withDNSPort appends port 53 to a server address that has none.
func withDNSPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53")
}

// internalSuffixes are top-level labels used for private networks: names
// under them are never in public DNS, so a public CA can neither reach
// them (HTTP-01, TLS-ALPN-01) nor find a record under them (DNS-01).
var internalSuffixes = []string{"local", "internal", "lan", "corp", "home", "localdomain", "intranet", "private", "localhost", "home.arpa"}

// LooksInternal reports whether name can only be resolved or reached from
// a private network: a single label (a NetBIOS-style host name), a name
// under a private-use suffix such as .local, .internal, .lan or .corp, or
// a private, loopback or link-local IP address. An ACME CA on the internet
// cannot validate such a name with HTTP-01 or TLS-ALPN-01.
func LooksInternal(name string) bool {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
		return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || isSharedAddress(ip)
	}
	n = strings.TrimPrefix(n, "*.")
	if !strings.Contains(n, ".") {
		return true
	}
	for _, s := range internalSuffixes {
		if n == s || strings.HasSuffix(n, "."+s) {
			return true
		}
	}
	return false
}

// isSharedAddress reports 100.64.0.0/10 (RFC 6598, carrier-grade NAT).
func isSharedAddress(ip netip.Addr) bool {
	return netip.MustParsePrefix("100.64.0.0/10").Contains(ip.Unmap())
}

// IsWildcard reports whether name is a wildcard certificate name.
func IsWildcard(name string) bool { return strings.HasPrefix(strings.TrimSpace(name), "*.") }

// validateWildcards refuses wildcard names that the configured issuer
// cannot obtain: an ACME CA validates a wildcard only through DNS-01 (RFC
// 8555 section 7.1.3), so without a DNS provider the obtain would fail at
// every start and renewal.
func (c *Config) validateWildcards(ps *problems) {
	if c.TLS.Issuer != IssuerACME || c.TLS.ACME.DNS.Enabled() {
		return
	}
	const fix = "%q is a wildcard: an ACME CA validates wildcards only through DNS-01; set tls.acme.dns.provider (rfc2136 or route53), or list the host names one by one"
	for i, s := range c.HTTP.Sites {
		for j, h := range s.Hosts {
			if IsWildcard(h) {
				ps.add(fmt.Sprintf("http.sites[%d].hosts[%d]", i, j), fix, h)
			}
		}
	}
	for i, l := range c.SQL {
		if IsWildcard(l.Hostname) {
			ps.add(fmt.Sprintf("sql[%d].hostname", i), fix, l.Hostname)
		}
	}
}
