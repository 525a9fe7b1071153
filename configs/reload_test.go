package configs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestCheckReload(t *testing.T) {
	base, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		keys   []string // keys named by the problems; none: the reload is allowed
	}{
		{"nothing", func(*Config) {}, nil},
		{"reloadable keys", func(c *Config) {
			c.Log.Level = "debug"
			c.Admin.Listen = "127.0.0.1:9902"
			c.DrainTimeout = time.Minute
			c.HTTP.Listen = ":8443"
			c.HTTP.Sites = []Site{{Hosts: []string{"a.test"}, Upstreams: []string{"http://10.0.0.1"}}}
			c.SQL = []SQLListener{{Name: "x"}}
			c.TLS.Certificates = []CertificateFile{{CertFile: "a.crt", KeyFile: "a.key"}}
		}, nil},
		{"log format", func(c *Config) { c.Log.Format = "console" }, []string{"log.format"}},
		{"storage", func(c *Config) { c.Storage = "/elsewhere" }, []string{"storage"}},
		{"issuer and version", func(c *Config) { c.TLS.Issuer, c.TLS.MinVersion = IssuerACME, "1.3" }, []string{"tls.issuer", "tls.min_version"}},
		{"internal ca", func(c *Config) {
			c.TLS.Internal.CAName = "Other"
			c.TLS.Internal.LeafLifetime = time.Hour
		}, []string{"tls.internal.ca_name", "tls.internal.leaf_lifetime"}},
		{"acme", func(c *Config) {
			c.TLS.ACME.Email = "ops@example.com"
			c.TLS.ACME.DisableHTTPChallenge = true
		}, []string{"tls.acme.email", "tls.acme.disable_http_challenge"}},
		{"acme dns and eab", func(c *Config) {
			c.TLS.ACME.DNS.Provider = DNSProviderRFC2136
			c.TLS.ACME.DNS.Resolvers = []string{"10.0.0.53"}
			c.TLS.ACME.EAB.KeyID = "kid-1"
		}, []string{"tls.acme.dns.provider", "tls.acme.dns.resolvers", "tls.acme.eab.key_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			tc.change(&next)
			err := CheckReload(&base, &next)
			if len(tc.keys) == 0 {
				if err != nil {
					t.Fatalf("CheckReload = %v, want the reload allowed", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("CheckReload = %v, want a *ValidationError", err)
			}
			var keys []string
			for _, p := range ve.Problems {
				keys = append(keys, p.Key)
			}
			if !slices.Equal(keys, tc.keys) {
				t.Errorf("problem keys %v, want %v", keys, tc.keys)
			}
		})
	}
}

// TestAccessLogQuery: off unless a site sets it.
func TestAccessLogQuery(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	data := `http:
  listen: "127.0.0.1:0"
  redirect_listen: ""
  sites:
    - hosts: [a.test]
      upstreams: [http://127.0.0.1:8080]
    - hosts: [b.test]
      upstreams: [http://127.0.0.1:8081]
      access_log_query: true
`
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Load(Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if l.HTTP.Sites[0].AccessLogQuery || !l.HTTP.Sites[1].AccessLogQuery {
		t.Errorf("access_log_query = %v, %v; want false (default), true", l.HTTP.Sites[0].AccessLogQuery, l.HTTP.Sites[1].AccessLogQuery)
	}
}

// TestSQLListenPortZero: several listeners may ask for any free port.
func TestSQLListenPortZero(t *testing.T) {
	cfg, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Listen = ""
	for _, name := range []string{"a", "b"} {
		cfg.SQL = append(cfg.SQL, SQLListener{Name: name, Listen: "127.0.0.1:0", Hostname: "sql.test",
			ClientEncryption: ClientEncryptionRequired,
			Upstream:         SQLUpstream{Address: "10.0.0.1:1433", Encryption: UpstreamEncryptionRequired}})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("two listeners on 127.0.0.1:0: %v", err)
	}
	cfg.SQL[0].Listen, cfg.SQL[1].Listen = "127.0.0.1:1433", "127.0.0.1:1433"
	if err := cfg.Validate(); err == nil {
		t.Fatal("two listeners on the same fixed port were accepted")
	}
}
