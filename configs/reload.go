package configs

import (
	"fmt"
	"slices"
)

// CheckReload returns a *ValidationError listing the keys whose change
// between the running configuration and next a reload (SIGHUP) cannot apply
// without a restart, or nil. The issuer, its settings, the TLS version floor
// and the storage directory are fixed for the life of the certificate
// manager, and the log encoder for the life of the logger; everything else
// (sites, upstreams, SQL listeners and their instance names, listen
// addresses, sql_browser.listen, log.level, admin.listen, drain_timeout and
// tls.certificates) can change.
func CheckReload(running, next *Config) error {
	var ps problems
	restart := func(key string, was, now any) {
		ps.add(key, "changed from %v to %v; this key takes a restart to change (the reload was refused)", was, now)
	}
	if running.Log.Format != next.Log.Format {
		restart("log.format", quote(running.Log.Format), quote(next.Log.Format))
	}
	if running.Storage != next.Storage {
		restart("storage", quote(running.Storage), quote(next.Storage))
	}
	if running.StorageRedis != next.StorageRedis {
		restart("storage_redis", "its previous values", "new ones")
	}
	if !slices.Equal(running.HTTP.ProxyProtocol.Trusted, next.HTTP.ProxyProtocol.Trusted) || running.HTTP.ProxyProtocol.Enabled != next.HTTP.ProxyProtocol.Enabled {
		restart("http.proxy_protocol", "its previous values", "new ones")
	}
	rt, nt := running.TLS, next.TLS
	if rt.Issuer != nt.Issuer {
		restart("tls.issuer", quote(rt.Issuer), quote(nt.Issuer))
	}
	if rt.MinVersion != nt.MinVersion {
		restart("tls.min_version", quote(rt.MinVersion), quote(nt.MinVersion))
	}
	if rt.Internal.CAName != nt.Internal.CAName {
		restart("tls.internal.ca_name", quote(rt.Internal.CAName), quote(nt.Internal.CAName))
	}
	if rt.Internal.LeafLifetime != nt.Internal.LeafLifetime {
		restart("tls.internal.leaf_lifetime", rt.Internal.LeafLifetime, nt.Internal.LeafLifetime)
	}
	ra, na := rt.ACME, nt.ACME
	for _, f := range []struct {
		key      string
		was, now any
	}{
		{"tls.acme.email", quote(ra.Email), quote(na.Email)},
		{"tls.acme.ca", quote(ra.CA), quote(na.CA)},
		{"tls.acme.ca_root", quote(ra.CARoot), quote(na.CARoot)},
		{"tls.acme.disable_http_challenge", ra.DisableHTTPChallenge, na.DisableHTTPChallenge},
		{"tls.acme.disable_tls_alpn_challenge", ra.DisableTLSALPNChallenge, na.DisableTLSALPNChallenge},
		{"tls.acme.dns.provider", quote(ra.DNS.Provider), quote(na.DNS.Provider)},
		{"tls.acme.dns.server", quote(ra.DNS.Server), quote(na.DNS.Server)},
		{"tls.acme.dns.tsig_key_name", quote(ra.DNS.TSIGKeyName), quote(na.DNS.TSIGKeyName)},
		{"tls.acme.dns.tsig_algorithm", quote(ra.DNS.TSIGAlgorithm), quote(na.DNS.TSIGAlgorithm)},
		{"tls.acme.dns.tsig_secret_env", quote(ra.DNS.TSIGSecretEnv), quote(na.DNS.TSIGSecretEnv)},
		{"tls.acme.dns.zone", quote(ra.DNS.Zone), quote(na.DNS.Zone)},
		{"tls.acme.dns.hosted_zone_id", quote(ra.DNS.HostedZoneID), quote(na.DNS.HostedZoneID)},
		{"tls.acme.dns.region", quote(ra.DNS.Region), quote(na.DNS.Region)},
		{"tls.acme.dns.propagation_timeout", ra.DNS.PropagationTimeout, na.DNS.PropagationTimeout},
		{"tls.acme.dns.resolvers", fmt.Sprintf("%q", ra.DNS.Resolvers), fmt.Sprintf("%q", na.DNS.Resolvers)},
		{"tls.acme.eab.key_id", quote(ra.EAB.KeyID), quote(na.EAB.KeyID)},
		{"tls.acme.eab.mac_key_env", quote(ra.EAB.MACKeyEnv), quote(na.EAB.MACKeyEnv)},
	} {
		if f.was != f.now {
			restart(f.key, f.was, f.now)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: slices.Clip(ps)}
}

func quote[T ~string](s T) string { return fmt.Sprintf("%q", string(s)) }
