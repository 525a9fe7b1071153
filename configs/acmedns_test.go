package configs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// acmeDNSBase is validBase with issuer acme and a valid rfc2136 provider.
func acmeDNSBase(t *testing.T) Config {
	t.Setenv("CONFIGS_TEST_TSIG", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
	t.Setenv("CONFIGS_TEST_EAB", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
	c := validBase()
	c.TLS.Issuer = IssuerACME
	c.TLS.ACME.DNS = ACMEDNS{
		Provider: DNSProviderRFC2136, Server: "10.0.0.53:53",
		TSIGKeyName: "gw-key", TSIGAlgorithm: TSIGHMACSHA256, TSIGSecretEnv: "CONFIGS_TEST_TSIG",
		PropagationTimeout: 2 * time.Minute, Resolvers: []string{"10.0.0.53", "10.0.0.54:5353"},
	}
	c.TLS.ACME.EAB = ACMEEAB{KeyID: "kid-1", MACKeyEnv: "CONFIGS_TEST_EAB"}
	return c
}

func TestACMEDNSValid(t *testing.T) {
	c := acmeDNSBase(t)
	c.TLS.ACME.DisableHTTPChallenge, c.TLS.ACME.DisableTLSALPNChallenge = true, true
	c.HTTP.Sites[0].Hosts = []string{"*.internal.test", "app.internal.test"}
	c.SQL[0].Hostname = "*.db.internal.test"
	if err := c.Validate(); err != nil {
		t.Fatalf("both challenges disabled with a DNS provider, wildcards: %v", err)
	}
	if got := c.TLS.ACME.DNS.ResolverAddrs(); strings.Join(got, " ") != "10.0.0.53:53 10.0.0.54:5353" {
		t.Errorf("ResolverAddrs = %v", got)
	}
	c.TLS.ACME.DNS = ACMEDNS{Provider: DNSProviderRoute53, HostedZoneID: "/hostedzone/Z0123456789ABC", Region: "eu-west-1", PropagationTimeout: time.Minute}
	if err := c.Validate(); err != nil {
		t.Fatalf("route53: %v", err)
	}
	if c.TLS.ACME.DNS.HostedZone() != "Z0123456789ABC" {
		t.Errorf("HostedZone = %q", c.TLS.ACME.DNS.HostedZone())
	}
	// Unsigned updates (a Windows DNS zone taking non-secure updates).
	c.TLS.ACME.DNS = ACMEDNS{Provider: DNSProviderRFC2136, Server: "dc01.clinic.example:53", PropagationTimeout: time.Minute}
	if err := c.Validate(); err != nil {
		t.Fatalf("rfc2136 without TSIG: %v", err)
	}
	mac, err := c.TLS.ACME.EAB.MACKey()
	if err != nil || strings.ContainsAny(mac, "+/=") {
		t.Errorf("MACKey = %q, %v", mac, err)
	}
}

func TestACMEDNSMessages(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string
		message string
	}{
		{"no server", func(c *Config) { c.TLS.ACME.DNS.Server = "" }, "tls.acme.dns.server", "host:port"},
		{"server without port", func(c *Config) { c.TLS.ACME.DNS.Server = "10.0.0.53" }, "tls.acme.dns.server", "not host:port"},
		{"key without secret", func(c *Config) { c.TLS.ACME.DNS.TSIGSecretEnv = "" }, "tls.acme.dns.tsig_secret_env", "gw-key"},
		{"secret without key", func(c *Config) { c.TLS.ACME.DNS.TSIGKeyName = "" }, "tls.acme.dns.tsig_key_name", "name the key"},
		{"secret unset", func(c *Config) { c.TLS.ACME.DNS.TSIGSecretEnv = "CONFIGS_TEST_UNSET" }, "tls.acme.dns.tsig_secret_env", "CONFIGS_TEST_UNSET is not set"},
		{"secret not base64", func(c *Config) {
			t.Setenv("CONFIGS_TEST_BAD", "not base64!")
			c.TLS.ACME.DNS.TSIGSecretEnv = "CONFIGS_TEST_BAD"
		}, "tls.acme.dns.tsig_secret_env", "base64"},
		{"algorithm", func(c *Config) { c.TLS.ACME.DNS.TSIGAlgorithm = "hmac-md5" }, "tls.acme.dns.tsig_algorithm", "hmac-sha256 | hmac-sha384"},
		{"provider", func(c *Config) { c.TLS.ACME.DNS.Provider = "cloudflare" }, "tls.acme.dns.provider", "rfc2136 | route53"},
		{"route53 key on rfc2136", func(c *Config) { c.TLS.ACME.DNS.HostedZoneID = "Z123" }, "tls.acme.dns.hosted_zone_id", "only applies to provider route53"},
		{"rfc2136 key on route53", func(c *Config) { c.TLS.ACME.DNS.Provider = DNSProviderRoute53 }, "tls.acme.dns.server", "only applies to provider rfc2136"},
		{"hosted zone id", func(c *Config) {
			c.TLS.ACME.DNS = ACMEDNS{Provider: DNSProviderRoute53, HostedZoneID: "clinic.example", PropagationTimeout: time.Minute}
		}, "tls.acme.dns.hosted_zone_id", "hosted zone ID"},
		{"region", func(c *Config) {
			c.TLS.ACME.DNS = ACMEDNS{Provider: DNSProviderRoute53, Region: "Frankfurt", PropagationTimeout: time.Minute}
		}, "tls.acme.dns.region", "us-east-1"},
		{"zone", func(c *Config) { c.TLS.ACME.DNS.Zone = "bad zone" }, "tls.acme.dns.zone", "zone name"},
		{"propagation", func(c *Config) { c.TLS.ACME.DNS.PropagationTimeout = 0 }, "tls.acme.dns.propagation_timeout", "positive"},
		{"resolver", func(c *Config) { c.TLS.ACME.DNS.Resolvers = []string{"10.0.0.53:99999"} }, "tls.acme.dns.resolvers[0]", "not a DNS server"},
		{"eab key id", func(c *Config) { c.TLS.ACME.EAB.KeyID = "" }, "tls.acme.eab.key_id", "key identifier"},
		{"eab env", func(c *Config) { c.TLS.ACME.EAB.MACKeyEnv = "" }, "tls.acme.eab.mac_key_env", "kid-1"},
		{"eab unset", func(c *Config) { c.TLS.ACME.EAB.MACKeyEnv = "CONFIGS_TEST_UNSET" }, "tls.acme.eab.mac_key_env", "not set"},
		{"wildcard site without dns", func(c *Config) {
			c.TLS.ACME.DNS = ACMEDNS{}
			c.HTTP.Sites[0].Hosts = []string{"*.clinic.example"}
		}, "http.sites[0].hosts[0]", "tls.acme.dns.provider"},
		{"wildcard sql without dns", func(c *Config) {
			c.TLS.ACME.DNS = ACMEDNS{}
			c.SQL[0].Hostname = "*.clinic.example"
		}, "sql[0].hostname", "only through DNS-01"},
		{"both challenges off without dns", func(c *Config) {
			c.TLS.ACME.DNS = ACMEDNS{}
			c.TLS.ACME.DisableHTTPChallenge, c.TLS.ACME.DisableTLSALPNChallenge = true, true
		}, "tls.acme.disable_http_challenge", "tls.acme.dns.provider"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := acmeDNSBase(t)
			tc.mutate(&c)
			var ve *ValidationError
			if err := c.Validate(); !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Key == tc.key {
					if !strings.Contains(p.Message, tc.message) {
						t.Errorf("%s: message %q lacks %q", tc.key, p.Message, tc.message)
					}
					return
				}
			}
			t.Fatalf("no problem keyed %s in %v", tc.key, ve.Problems)
		})
	}
}

// TestACMEDNSNotCheckedForOtherIssuers: tls.acme.* is ignored (not
// validated) unless tls.issuer is acme, and the internal CA issues
// wildcards without DNS.
func TestACMEDNSNotCheckedForOtherIssuers(t *testing.T) {
	c := validBase()
	c.TLS.ACME.DNS = ACMEDNS{Provider: DNSProviderRFC2136}
	c.HTTP.Sites[0].Hosts = []string{"*.clinic.example"}
	c.SQL[0].Hostname = "*.clinic.example"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestACMEDNSLoad(t *testing.T) {
	t.Setenv("CONFIGS_TEST_TSIG", "c2VjcmV0")
	cfg, err := Load(Options{File: writeConfig(t, minimalSite+`
tls:
  issuer: acme
  acme:
    ca: https://acme.test/dir
    dns:
      provider: rfc2136
      server: 127.0.0.1:5353
      tsig_key_name: gw-key
      tsig_secret_env: CONFIGS_TEST_TSIG
      resolvers: [127.0.0.1:5353]
`)})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.TLS.ACME.DNS
	if d.PropagationTimeout != 2*time.Minute || d.TSIGAlgorithm != TSIGHMACSHA256 || d.Provider != DNSProviderRFC2136 || len(d.Resolvers) != 1 {
		t.Errorf("tls.acme.dns = %+v", d)
	}
	_, err = Load(Options{File: writeConfig(t, minimalSite+"tls:\n  acme:\n    dns:\n      provider: cloudflare\n")})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Key != "tls.acme.dns.provider" ||
		!strings.Contains(ve.Problems[0].Message, "rfc2136 | route53") {
		t.Errorf("unknown provider: %v", err)
	}
}

func TestLooksInternal(t *testing.T) {
	for name, want := range map[string]bool{
		"app.clinic.example": false, "8.8.8.8": false, "app.internal.test": false,
		"sql01": true, "sql01.clinic.local": true, "ehr.corp": true, "iis.lan": true, "x.internal": true,
		"*.clinic.local": true, "10.0.0.5": true, "192.168.1.2": true, "127.0.0.1": true, "fe80::1": true,
		"100.64.1.1": true, "localhost": true, "printer.home.arpa": true,
	} {
		if got := LooksInternal(name); got != want {
			t.Errorf("LooksInternal(%q) = %v, want %v", name, got, want)
		}
	}
}
