package configs

import (
	"fmt"
	"slices"
	"strings"
)

// The enumerated settings. Each type accepts exactly its constants when a
// configuration is decoded (UnmarshalText), so a misspelt value is an error
// that names its key (`sql[0].client_encryption: "optional" is not one of
// required | strict | allow_plaintext_loopback`) instead of a silent
// default, and the packages that act on a setting switch on typed
// constants. Validate checks them again, for configurations built in code.

// LogLevel is log.level.
type LogLevel string

// LogFormat is log.format.
type LogFormat string

// Issuer is tls.issuer: where certificates for the managed names come from.
type Issuer string

// TLSVersion is tls.min_version.
type TLSVersion string

// ClientEncryption is sql[].client_encryption: the policy for SQL clients.
type ClientEncryption string

// UpstreamEncryption is sql[].upstream.encryption: how the gateway talks to
// SQL Server.
type UpstreamEncryption string

// Routing is sql[].upstream.routing: what the gateway does with a routing
// ENVCHANGE (Azure SQL redirection, read-only routing).
type Routing string

// DNSProvider is tls.acme.dns.provider: the DNS service that publishes
// ACME DNS-01 challenge records ("" means no DNS-01).
type DNSProvider string

// TSIGAlgorithm is tls.acme.dns.tsig_algorithm: the HMAC that signs RFC
// 2136 updates (RFC 8945).
type TSIGAlgorithm string

// LoadBalancing is http.sites[].load_balancing ("" means round_robin).
type LoadBalancing string

// ClientAuthMode is http.sites[].client_auth.mode ("" means none).
type ClientAuthMode string

// SameSite is http.sites[].cookie_same_site ("" leaves cookies as the
// application sets them).
type SameSite string

// HTTP2Mode is http.sites[].http2: whether HTTP/2 is offered to clients for
// the site's names ("" means auto).
type HTTP2Mode string

// Values of the enumerated settings.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"

	LogJSON    LogFormat = "json"
	LogConsole LogFormat = "console"

	IssuerInternal Issuer = "internal"
	IssuerACME     Issuer = "acme"
	IssuerNone     Issuer = "none" // only tls.certificates

	TLS12 TLSVersion = "1.2"
	TLS13 TLSVersion = "1.3"

	ClientEncryptionRequired               ClientEncryption = "required"
	ClientEncryptionStrict                 ClientEncryption = "strict"
	ClientEncryptionAllowPlaintextLoopback ClientEncryption = "allow_plaintext_loopback"

	UpstreamEncryptionRequired         UpstreamEncryption = "required"
	UpstreamEncryptionStrict           UpstreamEncryption = "strict"
	UpstreamEncryptionDisabledLoopback UpstreamEncryption = "disabled_loopback"

	RoutingRefuse Routing = "refuse" // error 50906: the client would bypass the gateway
	RoutingFollow Routing = "follow" // the gateway connects to the routed server itself

	DNSProviderRFC2136 DNSProvider = "rfc2136" // dynamic updates to a DNS server (BIND, Windows DNS, PowerDNS, Knot)
	DNSProviderRoute53 DNSProvider = "route53" // Amazon Route 53

	TSIGHMACSHA1   TSIGAlgorithm = "hmac-sha1"
	TSIGHMACSHA224 TSIGAlgorithm = "hmac-sha224"
	TSIGHMACSHA256 TSIGAlgorithm = "hmac-sha256"
	TSIGHMACSHA384 TSIGAlgorithm = "hmac-sha384"
	TSIGHMACSHA512 TSIGAlgorithm = "hmac-sha512"

	LoadBalancingRoundRobin LoadBalancing = "round_robin"
	LoadBalancingLeastConn  LoadBalancing = "least_conn"

	ClientAuthNone     ClientAuthMode = "none"
	ClientAuthOptional ClientAuthMode = "optional"
	ClientAuthRequired ClientAuthMode = "required"

	SameSiteLax    SameSite = "lax"
	SameSiteStrict SameSite = "strict"
	SameSiteNone   SameSite = "none"

	// HTTP2Auto offers HTTP/2 until the site is found to use Windows
	// authentication (a probe at start and reload, or a challenge seen in
	// traffic), then only HTTP/1.1, remembered in storage.
	HTTP2Auto HTTP2Mode = "auto"
	// HTTP2On always offers HTTP/2, even to a site that challenges with
	// NTLM or Negotiate.
	HTTP2On HTTP2Mode = "on"
	// HTTP2Off never offers HTTP/2 for the site's names.
	HTTP2Off HTTP2Mode = "off"
)

// The values each type accepts; "" where it means the default.
var (
	logLevels           = []LogLevel{LogDebug, LogInfo, LogWarn, LogError}
	logFormats          = []LogFormat{LogJSON, LogConsole}
	issuers             = []Issuer{IssuerInternal, IssuerACME, IssuerNone}
	tlsVersions         = []TLSVersion{TLS12, TLS13}
	clientEncryptions   = []ClientEncryption{ClientEncryptionRequired, ClientEncryptionStrict, ClientEncryptionAllowPlaintextLoopback}
	upstreamEncryptions = []UpstreamEncryption{UpstreamEncryptionRequired, UpstreamEncryptionStrict, UpstreamEncryptionDisabledLoopback}
	routings            = []Routing{"", RoutingRefuse, RoutingFollow}
	dnsProviders        = []DNSProvider{"", DNSProviderRFC2136, DNSProviderRoute53}
	tsigAlgorithms      = []TSIGAlgorithm{"", TSIGHMACSHA256, TSIGHMACSHA384, TSIGHMACSHA512, TSIGHMACSHA224, TSIGHMACSHA1}
	loadBalancings      = []LoadBalancing{"", LoadBalancingRoundRobin, LoadBalancingLeastConn}
	clientAuthModes     = []ClientAuthMode{"", ClientAuthNone, ClientAuthOptional, ClientAuthRequired}
	sameSites           = []SameSite{"", SameSiteLax, SameSiteStrict, SameSiteNone}
	http2Modes          = []HTTP2Mode{"", HTTP2Auto, HTTP2On, HTTP2Off}
)

// Valid reports whether v is one of the accepted values.
func (v LogLevel) Valid() bool           { return slices.Contains(logLevels, v) }
func (v LogFormat) Valid() bool          { return slices.Contains(logFormats, v) }
func (v Issuer) Valid() bool             { return slices.Contains(issuers, v) }
func (v TLSVersion) Valid() bool         { return slices.Contains(tlsVersions, v) }
func (v ClientEncryption) Valid() bool   { return slices.Contains(clientEncryptions, v) }
func (v UpstreamEncryption) Valid() bool { return slices.Contains(upstreamEncryptions, v) }
func (v Routing) Valid() bool            { return slices.Contains(routings, v) }
func (v DNSProvider) Valid() bool        { return slices.Contains(dnsProviders, v) }
func (v TSIGAlgorithm) Valid() bool      { return slices.Contains(tsigAlgorithms, v) }
func (v LoadBalancing) Valid() bool      { return slices.Contains(loadBalancings, v) }
func (v ClientAuthMode) Valid() bool     { return slices.Contains(clientAuthModes, v) }
func (v SameSite) Valid() bool           { return slices.Contains(sameSites, v) }
func (v HTTP2Mode) Valid() bool          { return slices.Contains(http2Modes, v) }

// UnmarshalText accepts only the type's values; the decoder reports the
// error under the key it was decoding.
func (v *LogLevel) UnmarshalText(b []byte) error         { return parseEnum(v, b, logLevels) }
func (v *LogFormat) UnmarshalText(b []byte) error        { return parseEnum(v, b, logFormats) }
func (v *Issuer) UnmarshalText(b []byte) error           { return parseEnum(v, b, issuers) }
func (v *TLSVersion) UnmarshalText(b []byte) error       { return parseEnum(v, b, tlsVersions) }
func (v *ClientEncryption) UnmarshalText(b []byte) error { return parseEnum(v, b, clientEncryptions) }
func (v *UpstreamEncryption) UnmarshalText(b []byte) error {
	return parseEnum(v, b, upstreamEncryptions)
}
func (v *DNSProvider) UnmarshalText(b []byte) error    { return parseEnum(v, b, dnsProviders) }
func (v *TSIGAlgorithm) UnmarshalText(b []byte) error  { return parseEnum(v, b, tsigAlgorithms) }
func (v *LoadBalancing) UnmarshalText(b []byte) error  { return parseEnum(v, b, loadBalancings) }
func (v *ClientAuthMode) UnmarshalText(b []byte) error { return parseEnum(v, b, clientAuthModes) }
func (v *SameSite) UnmarshalText(b []byte) error       { return parseEnum(v, b, sameSites) }
func (v *HTTP2Mode) UnmarshalText(b []byte) error      { return parseEnum(v, b, http2Modes) }

func parseEnum[T ~string](v *T, b []byte, allowed []T) error {
	if s := T(b); slices.Contains(allowed, s) {
		*v = s
		return nil
	}
	return fmt.Errorf("%q is not one of %s", b, enumList(allowed))
}

// enumList is "a | b | c"; a "" value (the default) is left out of it.
func enumList[T ~string](allowed []T) string {
	names := make([]string, 0, len(allowed))
	for _, a := range allowed {
		if a != "" {
			names = append(names, string(a))
		}
	}
	return strings.Join(names, " | ")
}

// checkEnum adds a problem under key when v is not one of its values.
func checkEnum[T interface {
	~string
	Valid() bool
}](ps *problems, key string, v T, allowed []T) {
	if !v.Valid() {
		ps.add(key, "%q is not one of %s", string(v), enumList(allowed))
	}
}
