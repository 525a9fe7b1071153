package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The types below write gateway configurations. They are marshalled as JSON,
// which is YAML too, so the gateway reads them as it reads any config file.
// Keys follow configs/gateway.yaml; fields left empty with omitempty keep the
// built-in defaults.

type gwConfig struct {
	Log          gwLog           `json:"log"`
	Admin        gwAdmin         `json:"admin"`
	Storage      string          `json:"storage"`
	StorageRedis *gwStorageRedis `json:"storage_redis,omitempty"`
	DrainTimeout string          `json:"drain_timeout,omitempty"`
	TLS          gwTLS           `json:"tls"`
	HTTP         gwHTTP          `json:"http"`
}

type gwStorageRedis struct {
	EncryptionKeyEnv string `json:"encryption_key_env"`
	Prefix           string `json:"prefix,omitempty"`
}

type gwProxyProtocol struct {
	Enabled bool     `json:"enabled"`
	Trusted []string `json:"trusted"`
}

type gwLog struct {
	Level  string `json:"level,omitempty"`
	Format string `json:"format,omitempty"`
}

type gwAdmin struct {
	Listen string `json:"listen"`
}

type gwTLS struct {
	Issuer       string   `json:"issuer,omitempty"`
	MinVersion   string   `json:"min_version,omitempty"`
	ACME         *gwACME  `json:"acme,omitempty"`
	Certificates []gwCert `json:"certificates,omitempty"`
}

type gwACME struct {
	Email                   string `json:"email,omitempty"`
	CA                      string `json:"ca"`
	CARoot                  string `json:"ca_root"`
	DisableHTTPChallenge    bool   `json:"disable_http_challenge"`
	DisableTLSALPNChallenge bool   `json:"disable_tls_alpn_challenge"`
	DNS                     *gwDNS `json:"dns,omitempty"`
	EAB                     *gwEAB `json:"eab,omitempty"`
}

type gwDNS struct {
	Provider           string   `json:"provider"`
	Server             string   `json:"server,omitempty"`
	TSIGKeyName        string   `json:"tsig_key_name,omitempty"`
	TSIGSecretEnv      string   `json:"tsig_secret_env,omitempty"`
	Zone               string   `json:"zone,omitempty"`
	HostedZoneID       string   `json:"hosted_zone_id,omitempty"`
	PropagationTimeout string   `json:"propagation_timeout,omitempty"`
	Resolvers          []string `json:"resolvers,omitempty"`
}

type gwEAB struct {
	KeyID     string `json:"key_id"`
	MACKeyEnv string `json:"mac_key_env"`
}

type gwCert struct {
	CertFile       string `json:"cert_file,omitempty"`
	KeyFile        string `json:"key_file,omitempty"`
	PFXFile        string `json:"pfx_file,omitempty"`
	PFXPasswordEnv string `json:"pfx_password_env,omitempty"`
}

type gwHTTP struct {
	Listen         string           `json:"listen"`
	RedirectListen string           `json:"redirect_listen"`
	ProxyProtocol  *gwProxyProtocol `json:"proxy_protocol,omitempty"`
	Sites          []gwSite         `json:"sites"`
}

type gwSite struct {
	Hosts        []string `json:"hosts"`
	Upstreams    []string `json:"upstreams"`
	HSTSMaxAge   string   `json:"hsts_max_age,omitempty"`
	PreserveHost *bool    `json:"preserve_host,omitempty"`

	WindowsAuth             *bool             `json:"windows_auth,omitempty"`
	HTTP2                   string            `json:"http2,omitempty"`
	InternalNames           []string          `json:"internal_names,omitempty"`
	RewriteLocation         *bool             `json:"rewrite_location,omitempty"`
	CookieSecure            *bool             `json:"cookie_secure,omitempty"`
	CookieHTTPOnly          *bool             `json:"cookie_http_only,omitempty"`
	CookieSameSite          string            `json:"cookie_same_site,omitempty"`
	UpgradeInsecureRequests *bool             `json:"upgrade_insecure_requests,omitempty"`
	RequestHeaders          map[string]string `json:"request_headers,omitempty"`
	MaxRequestBody          int64             `json:"max_request_body,omitempty"`
	LoadBalancing           string            `json:"load_balancing,omitempty"`
	Sticky                  *gwSticky         `json:"sticky,omitempty"`
	HealthCheck             *gwHealthCheck    `json:"health_check,omitempty"`
	PassiveHealth           *gwPassiveHealth  `json:"passive_health,omitempty"`
	UpstreamTLS             *gwUpstreamTLS    `json:"upstream_tls,omitempty"`
	ClientAuth              *gwClientAuth     `json:"client_auth,omitempty"`
	AccessLogQuery          bool              `json:"access_log_query,omitempty"`
}

type gwSticky struct {
	Cookie string `json:"cookie"`
}

type gwHealthCheck struct {
	Path         string `json:"path"`
	Interval     string `json:"interval,omitempty"`
	Timeout      string `json:"timeout,omitempty"`
	ExpectStatus int    `json:"expect_status,omitempty"`
}

type gwPassiveHealth struct {
	MaxFails    int    `json:"max_fails"`
	FailTimeout string `json:"fail_timeout,omitempty"`
}

type gwUpstreamTLS struct {
	CAFile      string `json:"ca_file,omitempty"`
	ServerName  string `json:"server_name,omitempty"`
	PinSHA256   string `json:"pin_sha256,omitempty"`
	SNIFromHost bool   `json:"sni_from_host,omitempty"`
}

type gwClientAuth struct {
	Mode   string `json:"mode"`
	CAFile string `json:"ca_file,omitempty"`
}

// newConfig is a configuration serving one site, hosts, from upstream with
// the internal CA: HTTPS on a free 127.0.0.1 port, no redirect listener, no
// admin listener (its default port is fixed), storage in a fresh directory.
func newConfig(t *testing.T, upstream string, hosts ...string) *gwConfig {
	t.Helper()
	return &gwConfig{
		Log:          gwLog{Level: "info", Format: "json"},
		Storage:      filepath.Join(t.TempDir(), "storage"),
		DrainTimeout: "10s",
		TLS:          gwTLS{Issuer: "internal"},
		HTTP: gwHTTP{
			Listen: "127.0.0.1:0",
			Sites:  []gwSite{{Hosts: hosts, Upstreams: []string{upstream}}},
		},
	}
}

// write saves the configuration as dir/gateway.yaml in a fresh directory
// and returns the path.
func (c *gwConfig) write(t *testing.T) string {
	t.Helper()
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func boolPtr(b bool) *bool { return &b }
