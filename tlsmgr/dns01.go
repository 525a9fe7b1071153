package tlsmgr

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr/rfc2136"
	"github.com/gateway-project/gateway/tlsmgr/route53"
)

// ACME challenge types, as NameSource.Challenges lists them.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	ChallengeDNS01     = "dns-01"
)

// challengeTTL is the TTL of the TXT records DNS-01 publishes: short, so
// that a resolver that cached an earlier token asks again soon.
const challengeTTL = time.Minute

// Challenges returns the ACME challenge types the gateway will use to
// obtain a certificate for name from an ACME CA, in the order it tries
// them, and, when none of the enabled ones can work for it, why. With a
// DNS provider every name starts with DNS-01; HTTP-01 and TLS-ALPN-01
// (unless disabled) follow only for names the CA could reach. Without
// one, a wildcard (DNS-01 only, RFC 8555 section 7.1.3) and a name that
// looks internal (configs.LooksInternal) cannot be obtained.
func Challenges(a configs.ACME, name string) (types []string, problem string) {
	ip := isIP(normalizeName(name))
	// An IP address has no DNS zone: RFC 8738 section 7 allows only
	// HTTP-01 and TLS-ALPN-01 for it.
	if a.DNS.Enabled() && !ip {
		types = append(types, ChallengeDNS01)
	}
	if reachable(name) {
		if !a.DisableHTTPChallenge {
			types = append(types, ChallengeHTTP01)
		}
		if !a.DisableTLSALPNChallenge {
			types = append(types, ChallengeTLSALPN01)
		}
	}
	switch {
	case len(types) > 0:
		return types, ""
	case configs.IsWildcard(name):
		return nil, fmt.Sprintf("%s is a wildcard: an ACME CA validates wildcards only with DNS-01; set tls.acme.dns.provider", name)
	case reachable(name):
		return nil, fmt.Sprintf("%s: every challenge is disabled; enable HTTP-01 or TLS-ALPN-01, or set tls.acme.dns.provider", name)
	case ip:
		return nil, fmt.Sprintf("%s is a private address: an ACME CA validates an IP address only by connecting to it (HTTP-01, TLS-ALPN-01; DNS-01 cannot prove an address); use a DNS name, or tls.issuer internal", name)
	default:
		return nil, fmt.Sprintf("%s looks internal (a single label, a private-use suffix such as .local, .internal, .lan or .corp, or a private address): an ACME CA cannot reach it for HTTP-01 or TLS-ALPN-01; set tls.acme.dns.provider for DNS-01 (with a CA that can resolve the name), use a public name, or tls.issuer internal", name)
	}
}

// reachable reports whether an ACME CA on the internet could validate name
// over HTTP-01 or TLS-ALPN-01.
func reachable(name string) bool {
	return !configs.IsWildcard(name) && !configs.LooksInternal(name)
}

// newDNSProvider builds the libdns provider of tls.acme.dns.
func newDNSProvider(d configs.ACMEDNS, log *zap.Logger) (certmagic.DNSProvider, error) {
	switch d.Provider {
	case configs.DNSProviderRFC2136:
		p := &rfc2136.Provider{Server: d.Server, KeyName: d.TSIGKeyName, Algorithm: string(d.Algorithm()), Zone: d.Zone}
		if d.TSIGKeyName != "" {
			secret, err := d.TSIGSecret()
			if err != nil {
				return nil, fmt.Errorf("tls.acme.dns.tsig_secret_env: %w", err)
			}
			p.Secret = secret
		}
		if err := p.Check(); err != nil {
			return nil, fmt.Errorf("tls.acme.dns: %w", err)
		}
		return p, nil
	case configs.DNSProviderRoute53:
		// The SDK's credential chain is read lazily, at the first call:
		// a gateway whose names are all in storage never asks for them.
		return route53.New(context.Background(), route53.Config{
			HostedZoneID: d.HostedZone(),
			Region:       d.Region,
			Zone:         d.Zone,
			Logger:       log.Named("route53"),
		})
	}
	return nil, fmt.Errorf("tls.acme.dns.provider: %q is not one of rfc2136 | route53", d.Provider)
}

// dnsSolver is certmagic's DNS-01 solver over the configured provider.
func dnsSolver(d configs.ACMEDNS, prov certmagic.DNSProvider, log *zap.Logger) *certmagic.DNS01Solver {
	return &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
		DNSProvider:        prov,
		TTL:                challengeTTL,
		PropagationTimeout: d.PropagationTimeout,
		Resolvers:          d.ResolverAddrs(),
		Logger:             log,
	}}
}

// dnsFirst is the ACME issuer when a DNS provider is set and HTTP-01 or
// TLS-ALPN-01 is still enabled. Certmagic's issuer uses DNS-01 to the
// exclusion of the other challenges once a DNS solver is set, so two
// issuers share the ACME account: dns (DNS-01 only) and fallback (HTTP-01
// and TLS-ALPN-01), tried second only for names a CA could reach
// (Challenges). Both store certificates under the same issuer key.
type dnsFirst struct {
	dns, fallback *certmagic.ACMEIssuer
	log           *zap.Logger
}

var (
	_ certmagic.Issuer     = dnsFirst{}
	_ certmagic.PreChecker = dnsFirst{}
	_ certmagic.Revoker    = dnsFirst{}
)

func (d dnsFirst) IssuerKey() string { return d.dns.IssuerKey() }

// PreCheck never prompts (see quietACME). The fallback's own check only
// settles its account e-mail as the DNS issuer's does, so that both use one
// account; its verdict is the DNS issuer's.
func (d dnsFirst) PreCheck(ctx context.Context, names []string, _ bool) error {
	_ = d.fallback.PreCheck(ctx, names, false)
	return d.dns.PreCheck(ctx, names, false)
}

func (d dnsFirst) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	cert, err := d.dns.Issue(ctx, csr)
	if err == nil || ctx.Err() != nil || !csrReachable(csr) {
		return cert, err
	}
	d.log.Warn("dns-01 failed; trying http-01 and tls-alpn-01", zap.Strings("names", csr.DNSNames), zap.Error(err))
	cert, ferr := d.fallback.Issue(ctx, csr)
	if ferr == nil {
		return cert, nil
	}
	return nil, fmt.Errorf("dns-01: %w; then http-01/tls-alpn-01: %v", err, ferr)
}

func (d dnsFirst) Revoke(ctx context.Context, cert certmagic.CertificateResource, reason int) error {
	return d.dns.Revoke(ctx, cert, reason)
}

// csrReachable reports whether every name in csr could be validated with
// HTTP-01 or TLS-ALPN-01.
func csrReachable(csr *x509.CertificateRequest) bool {
	for _, n := range csr.DNSNames {
		if !reachable(n) {
			return false
		}
	}
	for _, ip := range csr.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); !ok || !reachable(a.Unmap().String()) {
			return false
		}
	}
	return true
}

// explainACME adds what to change to an ACME CA's refusal of the account:
// a CA that requires an external account binding, or one that refused the
// configured binding (a wrong key ID or MAC key).
func explainACME(a configs.ACME, err error) error {
	var p acme.Problem
	if err == nil || !errors.As(err, &p) {
		return err
	}
	switch {
	case p.Type == acme.ProblemTypeExternalAccountRequired:
		return fmt.Errorf("%w (the CA requires an external account binding: set tls.acme.eab.key_id and mac_key_env)", err)
	case a.EAB.Enabled() && p.Type == acme.ProblemTypeUnauthorized && strings.Contains(strings.ToLower(p.Detail), "external account"):
		return fmt.Errorf("%w (the CA refused the external account binding of key_id %s: check tls.acme.eab.key_id and the MAC key in %s)", err, a.EAB.KeyID, a.EAB.MACKeyEnv)
	}
	return err
}
