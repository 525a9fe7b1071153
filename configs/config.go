package configs

import (
	"reflect"
	"slices"
	"strings"
	"time"
)

// Config is the whole gateway configuration. The zero value is not useful;
// obtain one from Load, which applies the defaults documented in gateway.yaml.
type Config struct {
	Log   Log   `mapstructure:"log"`
	Admin Admin `mapstructure:"admin"`
	// Storage is a directory, or redis://[user@]host:port/db (rediss:// for
	// TLS) shared by the gateways of a cluster, with StorageRedis.
	Storage      string       `mapstructure:"storage"`
	StorageRedis StorageRedis `mapstructure:"storage_redis"`
	// DrainTimeout bounds how long SIGTERM/SIGINT waits for in-flight HTTP
	// requests and TDS sessions before closing them.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`

	TLS  TLS           `mapstructure:"tls"`
	HTTP HTTP          `mapstructure:"http"`
	SQL  []SQLListener `mapstructure:"sql"`
	// SQLBrowser answers SQL Server Browser queries for the listeners that
	// have an instance name.
	SQLBrowser SQLBrowser `mapstructure:"sql_browser"`
	// Runtime tunes the Go garbage collector (runtime.go).
	Runtime Runtime `mapstructure:"runtime"`
}

// SQLBrowser is the gateway's SQL Server Browser (MC-SQLR, UDP): clients
// whose connection string names an instance (DB01\SQLEXPRESS) ask it for
// the instance's TCP port on UDP port 1434 of the host they connect to.
type SQLBrowser struct {
	Listen string `mapstructure:"listen"` // UDP host:port; "" disables
}

// StorageRedis configures a redis:// storage.
type StorageRedis struct {
	// PasswordEnv names the environment variable holding Redis's password
	// (AUTH); "" uses the URL's, if any.
	PasswordEnv string `mapstructure:"password_env"`
	// EncryptionKeyEnv names the environment variable holding 32 random
	// bytes, base64: every value is sealed with it (AES-256-GCM). Required.
	EncryptionKeyEnv string `mapstructure:"encryption_key_env"`
	// Prefix starts every Redis key the cluster uses.
	Prefix string `mapstructure:"prefix"`
	// CAFile is PEM roots for a rediss:// server ("" means system roots).
	CAFile string `mapstructure:"ca_file"`
}

// RedisStorage reports whether storage is a Redis URL.
func (c *Config) RedisStorage() bool {
	return strings.HasPrefix(c.Storage, "redis://") || strings.HasPrefix(c.Storage, "rediss://")
}

// ProxyProtocol accepts the PROXY protocol (v1 or v2) that a TCP load
// balancer puts before each connection, so that logs, audit lines and
// X-Forwarded-For name the real client. Only connections from Trusted
// addresses may carry a header; with Enabled they must.
type ProxyProtocol struct {
	Enabled bool     `mapstructure:"enabled"`
	Trusted []string `mapstructure:"trusted"` // CIDRs or addresses of the load balancers
}

// Log selects the zap logger's level and encoding.
type Log struct {
	Level  LogLevel  `mapstructure:"level"`
	Format LogFormat `mapstructure:"format"`
}

// Admin is the operator's HTTP endpoint (/healthz, /readyz, /metrics, /certs).
type Admin struct {
	Listen string `mapstructure:"listen"` // "" disables
}

// TLS is where certificates come from and the server-side TLS policy.
type TLS struct {
	Issuer       Issuer            `mapstructure:"issuer"`
	MinVersion   TLSVersion        `mapstructure:"min_version"`
	Internal     InternalCA        `mapstructure:"internal"`
	ACME         ACME              `mapstructure:"acme"`
	Certificates []CertificateFile `mapstructure:"certificates"`
}

// InternalCA configures the gateway's own certificate authority.
type InternalCA struct {
	CAName       string        `mapstructure:"ca_name"`
	LeafLifetime time.Duration `mapstructure:"leaf_lifetime"`
}

// ACME configures certificates obtained from an RFC 8555 server.
type ACME struct {
	Email                   string `mapstructure:"email"`
	CA                      string `mapstructure:"ca"`
	CARoot                  string `mapstructure:"ca_root"`
	DisableHTTPChallenge    bool   `mapstructure:"disable_http_challenge"`
	DisableTLSALPNChallenge bool   `mapstructure:"disable_tls_alpn_challenge"`
	// DNS enables the DNS-01 challenge (acmedns.go); its zero value leaves
	// HTTP-01 and TLS-ALPN-01 alone.
	DNS ACMEDNS `mapstructure:"dns"`
	// EAB is the external account binding some CAs require (RFC 8555
	// section 7.3.4); zero means none.
	EAB ACMEEAB `mapstructure:"eab"`
}

// CertificateFile is an operator-supplied certificate: either a PEM pair
// (CertFile and KeyFile) or a PKCS#12 bundle (PFXFile, with its password
// read from the environment variable PFXPasswordEnv).
type CertificateFile struct {
	CertFile       string `mapstructure:"cert_file"`
	KeyFile        string `mapstructure:"key_file"`
	PFXFile        string `mapstructure:"pfx_file"`
	PFXPasswordEnv string `mapstructure:"pfx_password_env"`
}

// HTTP is the HTTPS front.
type HTTP struct {
	Listen         string        `mapstructure:"listen"`          // "" disables the HTTPS front
	RedirectListen string        `mapstructure:"redirect_listen"` // "" disables
	ProxyProtocol  ProxyProtocol `mapstructure:"proxy_protocol"`  // on the HTTPS listener
	Sites          []Site        `mapstructure:"sites"`
}

// Site is one set of host names served from one group of upstreams. The
// defaults (gateway.yaml documents each key) apply to sites read by Load; a
// Site built in code starts from Go's zero values, which switch every
// optional behaviour off.
type Site struct {
	Hosts        []string      `mapstructure:"hosts"`
	Upstreams    []string      `mapstructure:"upstreams"`
	HSTSMaxAge   time.Duration `mapstructure:"hsts_max_age"`
	PreserveHost bool          `mapstructure:"preserve_host"`

	// WindowsAuth pins a client connection to a dedicated upstream
	// connection once NTLM or Negotiate authentication starts on it.
	WindowsAuth bool `mapstructure:"windows_auth"`
	// HTTP2 says whether clients may speak HTTP/2 to the site: auto (""
	// too) offers it until the site shows Windows authentication, on
	// always, off never.
	HTTP2 HTTP2Mode `mapstructure:"http2"`
	// InternalNames are the names the upstream uses for itself, as bare
	// host names (any port, http or https) or as http(s)://host[:port]
	// origins; with the upstream URLs they are what RewriteLocation maps to
	// the public origin.
	InternalNames           []string `mapstructure:"internal_names"`
	RewriteLocation         bool     `mapstructure:"rewrite_location"`
	CookieSecure            bool     `mapstructure:"cookie_secure"`
	CookieHTTPOnly          bool     `mapstructure:"cookie_http_only"`
	CookieSameSite          SameSite `mapstructure:"cookie_same_site"`
	UpgradeInsecureRequests bool     `mapstructure:"upgrade_insecure_requests"`
	// RequestHeaders are set on every request sent upstream, replacing any
	// value the client sent under the same name.
	RequestHeaders map[string]string `mapstructure:"request_headers"`
	// MaxRequestBody caps request bodies in bytes; 0 means no limit.
	MaxRequestBody int64 `mapstructure:"max_request_body"`

	LoadBalancing LoadBalancing `mapstructure:"load_balancing"`
	Sticky        Sticky        `mapstructure:"sticky"`
	HealthCheck   HealthCheck   `mapstructure:"health_check"`
	PassiveHealth PassiveHealth `mapstructure:"passive_health"`

	UpstreamTLS SiteUpstreamTLS `mapstructure:"upstream_tls"`
	ClientAuth  ClientAuth      `mapstructure:"client_auth"`

	// AccessLogQuery adds the query string to the site's access log lines.
	// Off by default: query strings of clinical applications carry patient
	// identifiers (HIPAA), and the path alone says which page was served.
	AccessLogQuery bool `mapstructure:"access_log_query"`
}

// Sticky sessions: when Cookie is set, a client keeps going to the upstream
// named (opaquely) by that cookie while the upstream is healthy.
type Sticky struct {
	Cookie string `mapstructure:"cookie"` // "" disables
}

// HealthCheck is the active health check of a site's upstreams, enabled
// when Path is set.
type HealthCheck struct {
	Path         string        `mapstructure:"path"`
	Interval     time.Duration `mapstructure:"interval"`
	Timeout      time.Duration `mapstructure:"timeout"`
	ExpectStatus int           `mapstructure:"expect_status"`
}

// PassiveHealth marks an upstream down after MaxFails failures in a row
// (connection failures and 502/503/504 answers) for FailTimeout.
type PassiveHealth struct {
	MaxFails    int           `mapstructure:"max_fails"` // 0 disables
	FailTimeout time.Duration `mapstructure:"fail_timeout"`
}

// SiteUpstreamTLS is how a site verifies its https:// upstreams.
type SiteUpstreamTLS struct {
	CAFile             string `mapstructure:"ca_file"`
	ServerName         string `mapstructure:"server_name"`
	PinSHA256          string `mapstructure:"pin_sha256"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
	// SNIFromHost sends the client's Host as the TLS server name and
	// verifies the certificate for it (IIS with SNI bindings per host).
	SNIFromHost bool `mapstructure:"sni_from_host"`
}

// IsZero reports whether nothing is configured, so that the defaults apply
// (system roots, the upstream URL's host name).
func (u SiteUpstreamTLS) IsZero() bool { return u == SiteUpstreamTLS{} }

// TLS returns the verification settings for one upstream host, with
// ServerName defaulted to serverName (the upstream URL's host, or the
// client's Host when SNIFromHost is set).
func (u SiteUpstreamTLS) TLS(serverName string) UpstreamTLS {
	if u.ServerName != "" && !u.SNIFromHost {
		serverName = u.ServerName
	}
	return UpstreamTLS{ServerName: serverName, CAFile: u.CAFile, PinSHA256: u.PinSHA256, InsecureSkipVerify: u.InsecureSkipVerify}
}

// ClientAuth asks browsers for a TLS client certificate on a site's names.
type ClientAuth struct {
	Mode   ClientAuthMode `mapstructure:"mode"`
	CAFile string         `mapstructure:"ca_file"` // PEM roots that client certificates must chain to
}

// SQLListener is one TDS listener in front of one SQL Server.
type SQLListener struct {
	Name             string           `mapstructure:"name"`
	Listen           string           `mapstructure:"listen"`
	Hostname         string           `mapstructure:"hostname"`
	ClientEncryption ClientEncryption `mapstructure:"client_encryption"`
	// Instance is the instance name the SQL Browser announces for this
	// listener (clients connect to HOST\INSTANCE); "" announces none.
	Instance string      `mapstructure:"instance"`
	Upstream SQLUpstream `mapstructure:"upstream"`
	// MaxConnections caps the client connections the listener serves at
	// once; connections over it are closed as soon as they are accepted.
	// Load sets DefaultSQLMaxConnections when the key is absent; zero (a
	// struct built in code) also means the default, see MaxConns.
	MaxConnections int `mapstructure:"max_connections"`
	// ProxyProtocol is the PROXY protocol from a load balancer in front.
	ProxyProtocol ProxyProtocol `mapstructure:"proxy_protocol"`
	// Audit is the read-only login `gateway audit` uses to ask SQL Server
	// itself which connections are encrypted and which databases are.
	Audit SQLAudit `mapstructure:"audit"`
}

// SQLAudit is a SQL login for `gateway audit`'s catalog queries
// (sys.dm_exec_connections, sys.databases, @@VERSION), made through the
// listener's verified upstream. The gateway itself never uses it.
type SQLAudit struct {
	User string `mapstructure:"user"` // "" skips SQL Server's own view
	// PasswordEnv names the environment variable holding the password; the
	// password itself is never in the file.
	PasswordEnv string `mapstructure:"password_env"`
}

// DefaultSQLMaxConnections is sql[].max_connections when it is not set.
const DefaultSQLMaxConnections = 1000

// maxSQLMaxConnections bounds sql[].max_connections: each connection costs
// two sockets (client and upstream), and a value beyond this is a typo.
const maxSQLMaxConnections = 1 << 20

// MaxConns is MaxConnections with zero meaning DefaultSQLMaxConnections:
// a listener is never uncapped.
func (l SQLListener) MaxConns() int {
	if l.MaxConnections <= 0 {
		return DefaultSQLMaxConnections
	}
	return l.MaxConnections
}

// SQLUpstream is the SQL Server behind a listener and how it is verified.
type SQLUpstream struct {
	// Address is host:port or host\INSTANCE (see UpstreamAddress).
	Address            string             `mapstructure:"address"`
	Encryption         UpstreamEncryption `mapstructure:"encryption"`
	ServerName         string             `mapstructure:"server_name"`
	CAFile             string             `mapstructure:"ca_file"`
	PinSHA256          string             `mapstructure:"pin_sha256"`
	InsecureSkipVerify bool               `mapstructure:"insecure_skip_verify"`
	// Routing says what a routing ENVCHANGE in a login reply leads to ("" means
	// refuse); with follow, RoutingAllow lists the servers that may be routed
	// to, as patterns for RoutingAllowed.
	Routing      Routing  `mapstructure:"routing"`
	RoutingAllow []string `mapstructure:"routing_allow"`
}

// UpstreamTLS is what a client-side TLS configuration needs to verify an
// upstream server; tlsmgr builds a *tls.Config from it.
type UpstreamTLS struct {
	ServerName         string
	CAFile             string
	PinSHA256          string
	InsecureSkipVerify bool
}

// TLS returns the verification settings of the upstream, with ServerName
// defaulted to the host of Address.
func (u SQLUpstream) TLS() UpstreamTLS {
	name := u.ServerName
	if name == "" {
		name = hostOf(u.Address)
	}
	return UpstreamTLS{ServerName: name, CAFile: u.CAFile, PinSHA256: u.PinSHA256, InsecureSkipVerify: u.InsecureSkipVerify}
}

// Equal reports whether two listener configurations are the same (a nil
// and an empty routing_allow are), so that a reload keeps a listener whose
// entry did not change.
func (l SQLListener) Equal(o SQLListener) bool {
	if !slices.Equal(l.Upstream.RoutingAllow, o.Upstream.RoutingAllow) || !slices.Equal(l.ProxyProtocol.Trusted, o.ProxyProtocol.Trusted) {
		return false
	}
	l.Upstream.RoutingAllow, o.Upstream.RoutingAllow = nil, nil
	l.ProxyProtocol.Trusted, o.ProxyProtocol.Trusted = nil, nil
	return reflect.DeepEqual(l, o)
}
