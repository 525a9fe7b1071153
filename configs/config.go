package configs

import "time"

// Config is the whole gateway configuration. The zero value is not useful;
// obtain one from Load, which applies the defaults documented in gateway.yaml.
type Config struct {
	Log     Log    `mapstructure:"log"`
	Admin   Admin  `mapstructure:"admin"`
	Storage string `mapstructure:"storage"`
	// DrainTimeout bounds how long SIGTERM/SIGINT waits for in-flight HTTP
	// requests and TDS sessions before closing them.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`

	TLS  TLS           `mapstructure:"tls"`
	HTTP HTTP          `mapstructure:"http"`
	SQL  []SQLListener `mapstructure:"sql"`
}

// Log selects the zap logger's level and encoding.
type Log struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // json | console
}

// Admin is the operator's HTTP endpoint (/healthz, /readyz, /metrics, /certs).
type Admin struct {
	Listen string `mapstructure:"listen"` // "" disables
}

// Issuer values for TLS.Issuer.
const (
	IssuerInternal = "internal"
	IssuerACME     = "acme"
	IssuerNone     = "none"
)

// TLS is where certificates come from and the server-side TLS policy.
type TLS struct {
	Issuer       string            `mapstructure:"issuer"`
	MinVersion   string            `mapstructure:"min_version"` // "1.2" | "1.3"
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
	Listen         string `mapstructure:"listen"`          // "" disables the HTTPS front
	RedirectListen string `mapstructure:"redirect_listen"` // "" disables
	Sites          []Site `mapstructure:"sites"`
}

// Site is one set of host names served from one group of upstreams.
type Site struct {
	Hosts        []string      `mapstructure:"hosts"`
	Upstreams    []string      `mapstructure:"upstreams"`
	HSTSMaxAge   time.Duration `mapstructure:"hsts_max_age"`
	PreserveHost bool          `mapstructure:"preserve_host"`
}

// Client encryption policies for SQLListener.ClientEncryption.
const (
	ClientEncryptionRequired               = "required"
	ClientEncryptionStrict                 = "strict"
	ClientEncryptionAllowPlaintextLoopback = "allow_plaintext_loopback"
)

// Upstream encryption modes for SQLUpstream.Encryption.
const (
	UpstreamEncryptionRequired         = "required"
	UpstreamEncryptionStrict           = "strict"
	UpstreamEncryptionDisabledLoopback = "disabled_loopback"
)

// SQLListener is one TDS listener in front of one SQL Server.
type SQLListener struct {
	Name             string      `mapstructure:"name"`
	Listen           string      `mapstructure:"listen"`
	Hostname         string      `mapstructure:"hostname"`
	ClientEncryption string      `mapstructure:"client_encryption"`
	Upstream         SQLUpstream `mapstructure:"upstream"`
}

// SQLUpstream is the SQL Server behind a listener and how it is verified.
type SQLUpstream struct {
	Address            string `mapstructure:"address"`
	Encryption         string `mapstructure:"encryption"`
	ServerName         string `mapstructure:"server_name"`
	CAFile             string `mapstructure:"ca_file"`
	PinSHA256          string `mapstructure:"pin_sha256"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
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
