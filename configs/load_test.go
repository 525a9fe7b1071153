package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const minimalSite = `
http:
  listen: "127.0.0.1:0"
  redirect_listen: ""
  sites:
    - hosts: [app.test]
      upstreams: [http://127.0.0.1:8080]
`

func TestDefaultsAlone(t *testing.T) {
	t.Setenv(EnvConfigFile, "")
	_, err := Load(Options{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load() with no sites = %v, want a *ValidationError about http.sites", err)
	}
	if len(ve.Problems) != 1 || ve.Problems[0].Key != "http.sites" {
		t.Fatalf("problems = %v, want exactly http.sites", ve.Problems)
	}
}

func TestEmbeddedDefaultValues(t *testing.T) {
	cfg, err := Load(Options{File: writeConfig(t, minimalSite)})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:9901"},
		{"tls.issuer", cfg.TLS.Issuer, "internal"},
		{"tls.min_version", cfg.TLS.MinVersion, "1.2"},
		{"tls.internal.leaf_lifetime", cfg.TLS.Internal.LeafLifetime, 168 * time.Hour},
		{"tls.internal.ca_name", cfg.TLS.Internal.CAName, "Gateway Local CA"},
		{"drain_timeout", cfg.DrainTimeout, 30 * time.Second},
		{"sites[0].hsts_max_age", cfg.HTTP.Sites[0].HSTSMaxAge, 8760 * time.Hour},
		{"sites[0].preserve_host", cfg.HTTP.Sites[0].PreserveHost, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	file := writeConfig(t, minimalSite+"log:\n  level: warn\n  format: console\nadmin:\n  listen: 127.0.0.1:7000\n")
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	flags.String("log-level", "", "")
	flags.String("admin-listen", "", "")
	if err := flags.Parse([]string{"--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEWAY_LOG_LEVEL", "error")
	t.Setenv("GATEWAY_ADMIN_LISTEN", "127.0.0.1:7001")
	t.Setenv("GATEWAY_TLS_INTERNAL_CA_NAME", "From Env CA")

	cfg, err := Load(Options{File: file, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log.level = %q: a set flag must beat env and file", cfg.Log.Level)
	}
	if cfg.Admin.Listen != "127.0.0.1:7001" {
		t.Errorf("admin.listen = %q: env must beat file when the flag is not set", cfg.Admin.Listen)
	}
	if cfg.Log.Format != "console" {
		t.Errorf("log.format = %q: file must beat defaults", cfg.Log.Format)
	}
	if cfg.TLS.Internal.CAName != "From Env CA" {
		t.Errorf("tls.internal.ca_name = %q: nested env keys are joined by _", cfg.TLS.Internal.CAName)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	t.Setenv(EnvConfigFile, writeConfig(t, minimalSite))
	cfg, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source == "" || len(cfg.HTTP.Sites) != 1 {
		t.Fatalf("GATEWAY_CONFIG not used: source=%q sites=%d", cfg.Source, len(cfg.HTTP.Sites))
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(Options{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if !IsNotExist(err) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestRelativePathsFollowConfigFile(t *testing.T) {
	file := writeConfig(t, minimalSite+"storage: state\n")
	cfg, err := Load(Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(file), "state"); cfg.Storage != want {
		t.Fatalf("storage = %q, want %q", cfg.Storage, want)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml, key string
	}{
		{"top level", minimalSite + "stroage: ./x\n", "stroage"},
		{"nested", minimalSite + "tls:\n  isuer: acme\n", "tls.isuer"},
		{"in a site", `
http:
  listen: "127.0.0.1:0"
  sites:
    - hosts: [a.test]
      upstreams: [http://127.0.0.1:1]
      hsts_maxage: 0
`, "hsts_maxage"},
		{"in sql upstream", minimalSite + `
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    upstream:
      address: 127.0.0.1:1433
      insecure_skip_verfy: true
`, "insecure_skip_verfy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Options{File: writeConfig(t, tc.yaml)})
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			found := false
			for _, p := range ve.Problems {
				if strings.Contains(p.Key, tc.key) {
					found = true
				}
			}
			if !found {
				t.Fatalf("problems %v do not name %q", ve.Problems, tc.key)
			}
		})
	}
}

func TestWrongType(t *testing.T) {
	_, err := Load(Options{File: writeConfig(t, minimalSite+"drain_timeout: soon\n")})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Problems[0].Key != "drain_timeout" {
		t.Fatalf("err = %v, want a problem keyed drain_timeout", err)
	}
}

func TestListDefaultsInSQL(t *testing.T) {
	cfg, err := Load(Options{File: writeConfig(t, minimalSite+`
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    upstream:
      address: db.internal:1433
`)})
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.SQL[0]
	if l.ClientEncryption != "required" || l.Upstream.Encryption != "required" {
		t.Fatalf("defaults not applied: %+v", l)
	}
	if got := l.Upstream.TLS().ServerName; got != "db.internal" {
		t.Fatalf("server name defaults to host of address: got %q", got)
	}
}

func TestDefaultsAndNames(t *testing.T) {
	cfg, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Issuer != "internal" || cfg.HTTP.Listen != ":443" {
		t.Fatalf("defaults not decoded: %+v", cfg)
	}
	cfg.HTTP.Sites = []Site{{Hosts: []string{"a.test", "B.test"}}, {Hosts: []string{"b.test", "c.test"}}}
	cfg.SQL = []SQLListener{{Hostname: "sql.test"}, {Hostname: "a.test"}}
	got := strings.Join(cfg.Names(), ",")
	if got != "a.test,B.test,c.test,sql.test" {
		t.Fatalf("Names() = %s", got)
	}
	if cfg.DefaultServerName() != "a.test" {
		t.Fatalf("DefaultServerName() = %s", cfg.DefaultServerName())
	}
}

func TestCertificatesOnly(t *testing.T) {
	t.Setenv(EnvConfigFile, "")
	cfg, err := Load(Options{CertificatesOnly: true})
	if err != nil {
		t.Fatalf("defaults must load for certificate-only commands: %v", err)
	}
	if cfg.Storage != "./data" {
		t.Fatalf("storage = %q", cfg.Storage)
	}
}

func TestDecodeAndValidationProblemsTogether(t *testing.T) {
	_, err := Load(Options{File: writeConfig(t, minimalSite+"tls:\n  isuer: internal\n  min_version: \"1.1\"\ndrain_timeout: soon\n")})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	keys := map[string]int{}
	for _, p := range ve.Problems {
		keys[p.Key]++
	}
	for _, want := range []string{"tls.isuer", "tls.min_version", "drain_timeout"} {
		if keys[want] != 1 {
			t.Errorf("problem %s reported %d times, want once; all: %v", want, keys[want], ve.Problems)
		}
	}
}
