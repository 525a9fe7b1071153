package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validBase() Config {
	return Config{
		Log:     Log{Level: "info", Format: "json"},
		Storage: "./data",
		TLS: TLS{Issuer: "internal", MinVersion: "1.2",
			Internal: InternalCA{CAName: "CA", LeafLifetime: 168 * 3600e9},
			ACME:     ACME{CA: "https://acme.test/dir"}},
		HTTP: HTTP{Listen: ":443", RedirectListen: ":80", Sites: []Site{{Hosts: []string{"app.test"}, Upstreams: []string{"http://10.0.0.5:80"}}}},
		SQL: []SQLListener{{Name: "crm", Listen: ":1433", Hostname: "sql.test", ClientEncryption: "required",
			Upstream: SQLUpstream{Address: "10.0.1.7:1433", Encryption: "required"}}},
	}
}

func TestValidateMessages(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string
		message string // a fragment of the fix the message must suggest
	}{
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", "debug | info | warn | error"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "json | console"},
		{"admin listen", func(c *Config) { c.Admin.Listen = "9901" }, "admin.listen", "host:port"},
		{"storage", func(c *Config) { c.Storage = "" }, "storage", "directory"},
		{"drain", func(c *Config) { c.DrainTimeout = -1 }, "drain_timeout", "negative"},
		{"issuer", func(c *Config) { c.TLS.Issuer = "letsencrypt" }, "tls.issuer", "internal | acme | none"},
		{"min version", func(c *Config) { c.TLS.MinVersion = "1.0" }, "tls.min_version", "1.2 | 1.3"},
		{"ca name", func(c *Config) { c.TLS.Internal.CAName = " " }, "tls.internal.ca_name", "empty"},
		{"leaf lifetime short", func(c *Config) { c.TLS.Internal.LeafLifetime = 60e9 }, "tls.internal.leaf_lifetime", "at least 1h"},
		{"leaf lifetime long", func(c *Config) { c.TLS.Internal.LeafLifetime = 400 * 24 * 3600e9 }, "tls.internal.leaf_lifetime", "398 days"},
		{"acme ca", func(c *Config) { c.TLS.Issuer = "acme"; c.TLS.ACME.CA = "http://acme.test" }, "tls.acme.ca", "https://"},
		{"acme email", func(c *Config) { c.TLS.Issuer = "acme"; c.TLS.ACME.Email = "ops" }, "tls.acme.email", "e-mail"},
		{"acme challenges", func(c *Config) {
			c.TLS.Issuer = "acme"
			c.TLS.ACME.DisableHTTPChallenge, c.TLS.ACME.DisableTLSALPNChallenge = true, true
		}, "tls.acme.disable_http_challenge", "at least one"},
		{"acme ca_root missing", func(c *Config) { c.TLS.Issuer = "acme"; c.TLS.ACME.CARoot = "/nonexistent/root.pem" }, "tls.acme.ca_root", "cannot read"},
		{"cert both kinds", func(c *Config) {
			c.TLS.Certificates = []CertificateFile{{CertFile: existing, KeyFile: existing, PFXFile: existing}}
		}, "tls.certificates[0]", "not both"},
		{"cert missing key", func(c *Config) { c.TLS.Certificates = []CertificateFile{{CertFile: existing}} }, "tls.certificates[0].key_file", "both"},
		{"cert empty", func(c *Config) { c.TLS.Certificates = []CertificateFile{{}} }, "tls.certificates[0]", "empty entry"},
		{"pfx password env unset", func(c *Config) {
			c.TLS.Certificates = []CertificateFile{{PFXFile: existing, PFXPasswordEnv: "GATEWAY_TEST_UNSET_PFX_PW"}}
		}, "tls.certificates[0].pfx_password_env", "GATEWAY_TEST_UNSET_PFX_PW is not set"},
		{"http listen", func(c *Config) { c.HTTP.Listen = "443" }, "http.listen", "host:port"},
		{"no sites", func(c *Config) { c.HTTP.Sites = nil }, "http.sites", "http.listen to \"\""},
		{"sites without listen", func(c *Config) { c.HTTP.Listen = "" }, "http.listen", "listen address"},
		{"redirect same", func(c *Config) { c.HTTP.RedirectListen = ":443" }, "http.redirect_listen", "same address"},
		{"no hosts", func(c *Config) { c.HTTP.Sites[0].Hosts = nil }, "http.sites[0].hosts", "at least one host"},
		{"bad host", func(c *Config) { c.HTTP.Sites[0].Hosts = []string{"app_.ex ample"} }, "http.sites[0].hosts[0]", "not a valid host name"},
		{"bad wildcard", func(c *Config) { c.HTTP.Sites[0].Hosts = []string{"app.*.test"} }, "http.sites[0].hosts[0]", "whole first label"},
		{"duplicate host", func(c *Config) {
			c.HTTP.Sites = append(c.HTTP.Sites, Site{Hosts: []string{"APP.test"}, Upstreams: []string{"http://x:1"}})
		}, "http.sites[1].hosts[0]", "already served by http.sites[0].hosts[0]"},
		{"no upstreams", func(c *Config) { c.HTTP.Sites[0].Upstreams = nil }, "http.sites[0].upstreams", "at least one upstream"},
		{"upstream scheme", func(c *Config) { c.HTTP.Sites[0].Upstreams = []string{"10.0.0.5:80"} }, "http.sites[0].upstreams[0]", "http:// or https://"},
		{"upstream query", func(c *Config) { c.HTTP.Sites[0].Upstreams = []string{"http://x/?a=1"} }, "http.sites[0].upstreams[0]", "remove the query"},
		{"hsts negative", func(c *Config) { c.HTTP.Sites[0].HSTSMaxAge = -1 }, "http.sites[0].hsts_max_age", "0 disables"},
		{"internal name", func(c *Config) { c.HTTP.Sites[0].InternalNames = []string{"ftp://iis01"} }, "http.sites[0].internal_names[0]", "origin"},
		{"internal name path", func(c *Config) { c.HTTP.Sites[0].InternalNames = []string{"http://iis01/app"} }, "http.sites[0].internal_names[0]", "no path"},
		{"same site", func(c *Config) { c.HTTP.Sites[0].CookieSameSite = "Relaxed" }, "http.sites[0].cookie_same_site", "lax | strict | none"},
		{"same site none", func(c *Config) { c.HTTP.Sites[0].CookieSameSite = "none" }, "http.sites[0].cookie_same_site", "cookie_secure"},
		{"request header name", func(c *Config) { c.HTTP.Sites[0].RequestHeaders = map[string]string{"Bad Name": "x"} }, "http.sites[0].request_headers.Bad Name", "not a valid header name"},
		{"request header reserved", func(c *Config) { c.HTTP.Sites[0].RequestHeaders = map[string]string{"x-forwarded-for": "1.2.3.4"} }, "http.sites[0].request_headers.x-forwarded-for", "client's address"},
		{"request header value", func(c *Config) { c.HTTP.Sites[0].RequestHeaders = map[string]string{"X-A": "a\r\nB: c"} }, "http.sites[0].request_headers.X-A", "CR, LF"},
		{"max body", func(c *Config) { c.HTTP.Sites[0].MaxRequestBody = -1 }, "http.sites[0].max_request_body", "0 means no limit"},
		{"load balancing", func(c *Config) { c.HTTP.Sites[0].LoadBalancing = "random" }, "http.sites[0].load_balancing", "round_robin | least_conn"},
		{"http2", func(c *Config) { c.HTTP.Sites[0].HTTP2 = "h2c" }, "http.sites[0].http2", "auto | on | off"},
		{"sticky cookie", func(c *Config) { c.HTTP.Sites[0].Sticky.Cookie = "a b" }, "http.sites[0].sticky.cookie", "cookie name"},
		{"health path", func(c *Config) {
			c.HTTP.Sites[0].HealthCheck = HealthCheck{Path: "health", Interval: 1e9, Timeout: 1e9, ExpectStatus: 200}
		}, "http.sites[0].health_check.path", "start with /"},
		{"health interval", func(c *Config) {
			c.HTTP.Sites[0].HealthCheck = HealthCheck{Path: "/h", Timeout: 1e9, ExpectStatus: 200}
		}, "http.sites[0].health_check.interval", "positive"},
		{"health status", func(c *Config) {
			c.HTTP.Sites[0].HealthCheck = HealthCheck{Path: "/h", Interval: 1e9, Timeout: 1e9, ExpectStatus: 42}
		}, "http.sites[0].health_check.expect_status", "HTTP status"},
		{"passive fails", func(c *Config) { c.HTTP.Sites[0].PassiveHealth.MaxFails = -1 }, "http.sites[0].passive_health.max_fails", "0 disables"},
		{"passive timeout", func(c *Config) { c.HTTP.Sites[0].PassiveHealth = PassiveHealth{MaxFails: 3} }, "http.sites[0].passive_health.fail_timeout", "positive"},
		{"upstream tls ca", func(c *Config) { c.HTTP.Sites[0].UpstreamTLS.CAFile = "/nonexistent.pem" }, "http.sites[0].upstream_tls.ca_file", "cannot read"},
		{"upstream tls pin", func(c *Config) { c.HTTP.Sites[0].UpstreamTLS.PinSHA256 = "zz" }, "http.sites[0].upstream_tls.pin_sha256", "64 hex digits"},
		{"upstream tls insecure", func(c *Config) {
			c.HTTP.Sites[0].UpstreamTLS = SiteUpstreamTLS{InsecureSkipVerify: true, PinSHA256: strings.Repeat("ab", 32)}
		}, "http.sites[0].upstream_tls.insecure_skip_verify", "contradicts"},
		{"upstream tls sni", func(c *Config) { c.HTTP.Sites[0].UpstreamTLS = SiteUpstreamTLS{ServerName: "iis01", SNIFromHost: true} }, "http.sites[0].upstream_tls.server_name", "sni_from_host"},
		{"client auth mode", func(c *Config) { c.HTTP.Sites[0].ClientAuth.Mode = "request" }, "http.sites[0].client_auth.mode", "none | optional | required"},
		{"client auth ca", func(c *Config) { c.HTTP.Sites[0].ClientAuth.Mode = "required" }, "http.sites[0].client_auth.ca_file", "missing"},
		{"client auth ca unused", func(c *Config) { c.HTTP.Sites[0].ClientAuth.CAFile = existing }, "http.sites[0].client_auth.ca_file", "mode is none"},
		{"sql name", func(c *Config) { c.SQL[0].Name = "" }, "sql[0].name", "name each"},
		{"sql name chars", func(c *Config) { c.SQL[0].Name = "my db" }, "sql[0].name", "letters"},
		{"sql duplicate name", func(c *Config) {
			c.SQL = append(c.SQL, c.SQL[0])
			c.SQL[1].Listen = ":1434"
		}, "sql[1].name", "also the name of sql[0]"},
		{"sql duplicate listen", func(c *Config) {
			c.SQL = append(c.SQL, c.SQL[0])
			c.SQL[1].Name = "other"
		}, "sql[1].listen", "also the address of sql[0]"},
		{"sql listen", func(c *Config) { c.SQL[0].Listen = "" }, "sql[0].listen", "missing"},
		{"sql hostname", func(c *Config) { c.SQL[0].Hostname = "" }, "sql[0].hostname", "certificate"},
		{"client encryption", func(c *Config) { c.SQL[0].ClientEncryption = "optional" }, "sql[0].client_encryption", "required | strict | allow_plaintext_loopback"},
		{"address no port", func(c *Config) { c.SQL[0].Upstream.Address = "10.0.1.7" }, "sql[0].upstream.address", "missing port"},
		{"address missing", func(c *Config) { c.SQL[0].Upstream.Address = "" }, "sql[0].upstream.address", "host:port"},
		{"upstream encryption", func(c *Config) { c.SQL[0].Upstream.Encryption = "off" }, "sql[0].upstream.encryption", "required | strict | disabled_loopback"},
		{"disabled not loopback", func(c *Config) { c.SQL[0].Upstream.Encryption = "disabled_loopback" }, "sql[0].upstream.encryption", "only allowed for 127.0.0.0/8"},
		{"pin", func(c *Config) { c.SQL[0].Upstream.PinSHA256 = "abcd" }, "sql[0].upstream.pin_sha256", "64 hex digits"},
		{"ca file", func(c *Config) { c.SQL[0].Upstream.CAFile = "/nonexistent.pem" }, "sql[0].upstream.ca_file", "cannot read"},
		{"insecure strict", func(c *Config) {
			c.SQL[0].Upstream.Encryption = "strict"
			c.SQL[0].Upstream.InsecureSkipVerify = true
		}, "sql[0].upstream.insecure_skip_verify", "TDS 8"},
		{"insecure with ca", func(c *Config) {
			c.SQL[0].Upstream.InsecureSkipVerify = true
			c.SQL[0].Upstream.CAFile = existing
		}, "sql[0].upstream.insecure_skip_verify", "contradicts"},
		{"tls13 with tds7", func(c *Config) { c.TLS.MinVersion = "1.3" }, "sql[0].client_encryption", "TLS 1.2 at most"},
		{"server name", func(c *Config) { c.SQL[0].Upstream.ServerName = "bad name" }, "sql[0].upstream.server_name", "not a valid host name"},
		{"redis storage without a key", func(c *Config) { c.Storage = "redis://127.0.0.1:6379/0" }, "storage_redis.encryption_key_env", "missing"},
		{"redis storage key unset", func(c *Config) {
			c.Storage = "redis://127.0.0.1:6379/0"
			c.StorageRedis.EncryptionKeyEnv = "GATEWAY_TEST_UNSET_KEY"
		}, "storage_redis.encryption_key_env", "is not set"},
		{"redis password in the URL", func(c *Config) { c.Storage = "redis://u:pw@127.0.0.1:6379/0" }, "storage", "password_env"},
		{"redis without a port", func(c *Config) { c.Storage = "redis://127.0.0.1/0" }, "storage", "host:port"},
		{"storage_redis with a directory", func(c *Config) { c.StorageRedis.EncryptionKeyEnv = "X" }, "storage_redis", "has no effect"},
		{"ca_file without TLS", func(c *Config) {
			c.Storage = "redis://127.0.0.1:6379/0"
			c.StorageRedis.CAFile = existing
		}, "storage_redis.ca_file", "rediss://"},
		{"proxy protocol without trusted", func(c *Config) { c.HTTP.ProxyProtocol.Enabled = true }, "http.proxy_protocol.trusted", "is empty"},
		{"proxy protocol bad address", func(c *Config) {
			c.SQL[0].ProxyProtocol = ProxyProtocol{Enabled: true, Trusted: []string{"10.0.0.0/33"}}
		}, "sql[0].proxy_protocol.trusted[0]", "not an address or a CIDR"},
		{"proxy protocol trusted while off", func(c *Config) { c.HTTP.ProxyProtocol.Trusted = []string{"10.0.0.1"} }, "http.proxy_protocol.enabled", "no effect"},
		{"bad instance address", func(c *Config) { c.SQL[0].Upstream.Address = `sql01\9X` }, "sql[0].upstream.address", "not an instance name"},
		{"routing value", func(c *Config) { c.SQL[0].Upstream.Routing = "redirect" }, "sql[0].upstream.routing", "refuse | follow"},
		{"follow without allow list", func(c *Config) { c.SQL[0].Upstream.Routing = RoutingFollow }, "sql[0].upstream.routing_allow", "is empty but routing is follow"},
		{"follow with a pin", func(c *Config) {
			c.SQL[0].Upstream.Routing = RoutingFollow
			c.SQL[0].Upstream.RoutingAllow = []string{"*.corp.local"}
			c.SQL[0].Upstream.PinSHA256 = strings.Repeat("ab", 32)
		}, "sql[0].upstream.pin_sha256", "cannot be used with routing: follow"},
		{"allow list pattern", func(c *Config) {
			c.SQL[0].Upstream.Routing = RoutingFollow
			c.SQL[0].Upstream.RoutingAllow = []string{"sql.*.local"}
		}, "sql[0].upstream.routing_allow[0]", "wildcard"},
		{"allow list without follow", func(c *Config) { c.SQL[0].Upstream.RoutingAllow = []string{"sql02.corp.local"} }, "sql[0].upstream.routing_allow", "no effect unless routing is follow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validBase()
			tc.mutate(&cfg)
			err := cfg.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
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

func TestValidBaseIsValid(t *testing.T) {
	cfg := validBase()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.SQL[0].Upstream.Address = "127.0.0.1:1433"
	cfg.SQL[0].Upstream.Encryption = "disabled_loopback"
	cfg.SQL[0].Upstream.PinSHA256 = strings.Repeat("ab:", 31) + "ab"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("loopback plain upstream and colon pin must be valid: %v", err)
	}
}

func TestEveryExampleLoads(t *testing.T) {
	t.Setenv("ACME_TSIG_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")                    // acme-dns.yaml
	t.Setenv("CLUSTER_STORAGE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=") // cluster.yaml
	t.Setenv("CLUSTER_REDIS_PASSWORD", "example")
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(Options{File: f}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
