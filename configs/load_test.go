package configs

import (
	"errors"
	"fmt"
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
		{"log.level", cfg.Log.Level, LogInfo},
		{"log.format", cfg.Log.Format, LogJSON},
		{"admin.listen", cfg.Admin.Listen, "127.0.0.1:9901"},
		{"tls.issuer", cfg.TLS.Issuer, IssuerInternal},
		{"tls.min_version", cfg.TLS.MinVersion, TLS12},
		{"tls.internal.leaf_lifetime", cfg.TLS.Internal.LeafLifetime, 168 * time.Hour},
		{"tls.internal.ca_name", cfg.TLS.Internal.CAName, "Gateway Local CA"},
		{"drain_timeout", cfg.DrainTimeout, 30 * time.Second},
		{"sites[0].hsts_max_age", cfg.HTTP.Sites[0].HSTSMaxAge, 8760 * time.Hour},
		{"sites[0].preserve_host", cfg.HTTP.Sites[0].PreserveHost, true},
		{"sites[0].windows_auth", cfg.HTTP.Sites[0].WindowsAuth, true},
		{"sites[0].http2", cfg.HTTP.Sites[0].HTTP2, HTTP2Auto},
		{"sites[0].rewrite_location", cfg.HTTP.Sites[0].RewriteLocation, true},
		{"sites[0].cookie_secure", cfg.HTTP.Sites[0].CookieSecure, true},
		{"sites[0].cookie_http_only", cfg.HTTP.Sites[0].CookieHTTPOnly, false},
		{"sites[0].cookie_same_site", cfg.HTTP.Sites[0].CookieSameSite, SameSite("")},
		{"sites[0].upgrade_insecure_requests", cfg.HTTP.Sites[0].UpgradeInsecureRequests, false},
		{"sites[0].max_request_body", cfg.HTTP.Sites[0].MaxRequestBody, int64(0)},
		{"sites[0].load_balancing", cfg.HTTP.Sites[0].LoadBalancing, LoadBalancingRoundRobin},
		{"sites[0].sticky.cookie", cfg.HTTP.Sites[0].Sticky.Cookie, ""},
		{"sites[0].health_check.path", cfg.HTTP.Sites[0].HealthCheck.Path, ""},
		{"sites[0].health_check.interval", cfg.HTTP.Sites[0].HealthCheck.Interval, 10 * time.Second},
		{"sites[0].health_check.timeout", cfg.HTTP.Sites[0].HealthCheck.Timeout, 5 * time.Second},
		{"sites[0].health_check.expect_status", cfg.HTTP.Sites[0].HealthCheck.ExpectStatus, 200},
		{"sites[0].passive_health.max_fails", cfg.HTTP.Sites[0].PassiveHealth.MaxFails, 3},
		{"sites[0].passive_health.fail_timeout", cfg.HTTP.Sites[0].PassiveHealth.FailTimeout, 30 * time.Second},
		{"sites[0].upstream_tls.sni_from_host", cfg.HTTP.Sites[0].UpstreamTLS.SNIFromHost, false},
		{"sites[0].client_auth.mode", cfg.HTTP.Sites[0].ClientAuth.Mode, ClientAuthNone},
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

func TestSiteKeysInFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clients.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gateway.yaml")
	yaml := `
http:
  listen: "127.0.0.1:0"
  sites:
    - hosts: [app.test]
      upstreams: [https://iis01:443, https://iis02:443]
      windows_auth: false
      internal_names: [iis01.corp.local, "http://iis01:8080"]
      cookie_same_site: lax
      request_headers: {X-ARR-SSL: "on", HTTPS: "on"}
      max_request_body: 1048576
      load_balancing: least_conn
      sticky: {cookie: GW_AFFINITY}
      health_check: {path: /health.aspx, interval: 2s}
      passive_health: {max_fails: 0}
      upstream_tls: {server_name: iis.corp.local}
      client_auth: {mode: required, ca_file: clients.pem}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.HTTP.Sites[0]
	if s.WindowsAuth || !s.RewriteLocation || !s.CookieSecure || s.CookieSameSite != "lax" {
		t.Errorf("booleans: %+v", s)
	}
	if s.RequestHeaders["x-arr-ssl"] != "on" || s.RequestHeaders["https"] != "on" {
		t.Errorf("request_headers = %v (names are case-insensitive)", s.RequestHeaders)
	}
	if s.HealthCheck.Interval != 2*time.Second || s.HealthCheck.Timeout != 5*time.Second || s.HealthCheck.ExpectStatus != 200 {
		t.Errorf("health_check defaults inside a partly set entry: %+v", s.HealthCheck)
	}
	if s.PassiveHealth.MaxFails != 0 || s.PassiveHealth.FailTimeout != 30*time.Second {
		t.Errorf("passive_health = %+v", s.PassiveHealth)
	}
	if s.ClientAuth.CAFile != filepath.Join(dir, "clients.pem") {
		t.Errorf("client_auth.ca_file not resolved against the config's directory: %q", s.ClientAuth.CAFile)
	}
	if got := s.UpstreamTLS.TLS("iis01").ServerName; got != "iis.corp.local" {
		t.Errorf("upstream_tls server name %q", got)
	}
	if s.LoadBalancing != "least_conn" || s.Sticky.Cookie != "GW_AFFINITY" || s.MaxRequestBody != 1<<20 {
		t.Errorf("farm keys: %+v", s)
	}
}

// TestHTTP2Modes: http2 takes auto, on and off written bare, as YAML 1.1
// would read them as booleans (the decoder must not).
func TestHTTP2Modes(t *testing.T) {
	for _, want := range []HTTP2Mode{HTTP2Auto, HTTP2On, HTTP2Off} {
		t.Run(string(want), func(t *testing.T) {
			cfg, err := Load(Options{File: writeConfig(t, minimalSite+"      http2: "+string(want)+"\n")})
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.HTTP.Sites[0].HTTP2; got != want {
				t.Errorf("http2 = %q, want %q", got, want)
			}
		})
	}
}

// TestEnumsRejectedAtDecode: an enumerated setting with a value outside
// its type is refused while the file is decoded, as a problem naming the
// key once (not again by validation), whether it comes from the file or
// from the environment.
func TestEnumsRejectedAtDecode(t *testing.T) {
	const sqlEntry = `
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    client_encryption: %s
    upstream:
      address: 127.0.0.1:1433
      encryption: %s
`
	site := func(extra string) string {
		return "http:\n  listen: \"127.0.0.1:0\"\n  redirect_listen: \"\"\n  sites:\n    - hosts: [app.test]\n      upstreams: [http://127.0.0.1:8080]\n      " + extra + "\n"
	}
	tests := []struct {
		name, yaml string
		env        [2]string
		key, want  string
	}{
		{name: "log.level", yaml: minimalSite + "log:\n  level: verbose\n", key: "log.level", want: "debug | info | warn | error"},
		{name: "log.format", yaml: minimalSite + "log:\n  format: text\n", key: "log.format", want: "json | console"},
		{name: "tls.issuer", yaml: minimalSite + "tls:\n  issuer: letsencrypt\n", key: "tls.issuer", want: "internal | acme | none"},
		{name: "tls.min_version", yaml: minimalSite + "tls:\n  min_version: \"1.1\"\n", key: "tls.min_version", want: "1.2 | 1.3"},
		{name: "client_encryption", yaml: minimalSite + fmt.Sprintf(sqlEntry, "optional", "required"),
			key: "sql[0].client_encryption", want: "required | strict | allow_plaintext_loopback"},
		{name: "upstream.encryption", yaml: minimalSite + fmt.Sprintf(sqlEntry, "required", "off"),
			key: "sql[0].upstream.encryption", want: "required | strict | disabled_loopback"},
		{name: "load_balancing", yaml: site("load_balancing: random"), key: "http.sites[0].load_balancing", want: "round_robin | least_conn"},
		{name: "client_auth.mode", yaml: site("client_auth: {mode: request}"), key: "http.sites[0].client_auth.mode", want: "none | optional | required"},
		{name: "cookie_same_site", yaml: site("cookie_same_site: Lax"), key: "http.sites[0].cookie_same_site", want: "lax | strict | none"},
		{name: "http2", yaml: site("http2: true"), key: "http.sites[0].http2", want: "auto | on | off"},
		{name: "from the environment", yaml: minimalSite, env: [2]string{"GATEWAY_TLS_ISSUER", "ACME"}, key: "tls.issuer", want: "internal | acme | none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			_, err := Load(Options{File: writeConfig(t, tc.yaml)})
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			n := 0
			for _, p := range ve.Problems {
				if p.Key == tc.key {
					n++
					if !strings.Contains(p.Message, "is not one of "+tc.want) {
						t.Errorf("%s: %q does not list %q", p.Key, p.Message, tc.want)
					}
				}
			}
			if n != 1 {
				t.Errorf("%s reported %d times, want once: %v", tc.key, n, ve.Problems)
			}
		})
	}
}
