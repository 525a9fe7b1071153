package audit

import (
	"time"
)

// Schema names the version of the JSON report's layout.
const Schema = "gateway-audit/1"

// Verdicts of a check.
const (
	Pass   = "pass"    // the property holds, as measured
	Fail   = "fail"    // it does not: Fix says what to change
	Warn   = "warn"    // it holds, with a risk worth knowing (Finding says which)
	Info   = "info"    // a fact, with no verdict
	NotRun = "not_run" // it could not be measured here; Finding says why
)

// Report is audit.json. Figures appear only where they were measured: a
// check that could not run says so (not_run) instead of showing a zero.
type Report struct {
	Schema    string    `json:"schema"`
	Generated time.Time `json:"generated"`
	Config    string    `json:"config"`    // the file audited
	Verdict   string    `json:"verdict"`   // pass, or fail when any check failed
	Summary   Summary   `json:"summary"`   // checks by verdict
	Gateway   Gateway   `json:"gateway"`   // the running gateway, if one answered
	Checks    []Check   `json:"checks"`    // every check, in report order
	Listeners []Scan    `json:"listeners"` // what each listener accepted
	Upstreams []Leg     `json:"upstreams"`
	SQLServer []SQLView `json:"sql_server"` // SQL Server's own view, per listener with an audit login
	Traffic   *Traffic  `json:"traffic,omitempty"`
}

// Summary counts the checks by verdict.
type Summary struct {
	Pass   int `json:"pass"`
	Fail   int `json:"fail"`
	Warn   int `json:"warn"`
	Info   int `json:"info"`
	NotRun int `json:"not_run"`
}

// Check is one verdict.
type Check struct {
	ID      string `json:"id"`      // stable: https.protocols, sql.crm.encrypt_off, ...
	Section string `json:"section"` // listeners, upstreams, sql_server, traffic, gateway
	Subject string `json:"subject"` // what was checked: an address, a name, a database
	Title   string `json:"title"`
	Verdict string `json:"verdict"`
	Finding string `json:"finding"`       // what was measured
	Fix     string `json:"fix,omitempty"` // for fail and warn: what to change
	Key     string `json:"key,omitempty"` // the configuration key to change
}

// Gateway is the running gateway as its admin endpoint answered.
type Gateway struct {
	AdminURL  string    `json:"admin_url,omitempty"`
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started,omitempty"`
	Ready     bool      `json:"ready"`
	NotReady  []string  `json:"not_ready,omitempty"`
}

// Scan is what one listener accepted when connected to as a client.
type Scan struct {
	Kind     string   `json:"kind"` // https or sql
	Name     string   `json:"name"` // sql[].name, or "https"
	Address  string   `json:"address"`
	Versions []string `json:"tls_versions_accepted"`
	Refused  []string `json:"tls_versions_refused"`
	// Suites are the TLS 1.2 cipher suites accepted, of those a Go client
	// can offer (every one is tried alone); TLS 1.3's are all AEAD.
	Suites     []string `json:"tls12_suites_accepted"`
	TLS13Suite string   `json:"tls13_suite,omitempty"`
	ALPN       string   `json:"alpn,omitempty"`
	// Certificates are the chains served, per name asked for (SNI).
	Certificates []CertReport `json:"certificates"`
	// For sql listeners: the PRELOGIN answers to clients that ask for
	// login-only encryption (OFF) and for none (NOT_SUP).
	AnswerToOff    string `json:"answer_to_encrypt_off,omitempty"`
	AnswerToNotSup string `json:"answer_to_encrypt_not_sup,omitempty"`
	// For https: the HSTS header per site, and where the redirect listener
	// sends http:// requests.
	HSTS     map[string]string `json:"hsts,omitempty"`
	Redirect string            `json:"redirect,omitempty"`
}

// CertReport is a certificate chain as served for one name.
type CertReport struct {
	Name      string    `json:"name"` // asked for
	Subject   string    `json:"subject"`
	SANs      []string  `json:"sans"`
	Issuer    string    `json:"issuer"`
	Key       string    `json:"key"` // ECDSA P-256, RSA 2048, Ed25519
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	DaysLeft  float64   `json:"days_left"`
	Verified  bool      `json:"verified"` // for Name, against the trusted roots
	VerifyErr string    `json:"verify_error,omitempty"`
	SHA256    string    `json:"sha256"`
}

// Leg is one upstream leg: from the gateway to IIS or SQL Server.
type Leg struct {
	Kind      string      `json:"kind"` // http or sql
	Owner     string      `json:"owner"`
	Address   string      `json:"address"`
	Reachable bool        `json:"reachable"`
	Verify    string      `json:"verify"` // ca, pin, ca+pin, system, insecure, none (plain)
	TLS       string      `json:"tls_version,omitempty"`
	Cert      *CertReport `json:"certificate,omitempty"`
	// ForcesEncryption: SQL Server answered a PRELOGIN asking for
	// login-only encryption with REQ (Force Encryption = Yes).
	ForcesEncryption *bool  `json:"forces_encryption,omitempty"`
	Error            string `json:"error,omitempty"`
}

// SQLView is what SQL Server itself said, through the audit login.
type SQLView struct {
	Listener    string       `json:"listener"`
	Upstream    string       `json:"upstream"`
	Version     string       `json:"version,omitempty"`
	Self        string       `json:"audit_client_address,omitempty"` // the gateway host, as SQL Server sees it
	Connections []Connection `json:"connections"`
	Databases   []Database   `json:"databases"`
	Error       string       `json:"error,omitempty"`
}

// Connection is a row of sys.dm_exec_connections.
type Connection struct {
	SessionID  int    `json:"session_id"`
	Encrypted  bool   `json:"encrypted"`
	Address    string `json:"client_net_address"`
	AuthScheme string `json:"auth_scheme"`
	ViaGateway bool   `json:"via_gateway"` // from the gateway's address
}

// Database is a row of sys.databases.
type Database struct {
	Name      string `json:"name"`
	Encrypted bool   `json:"encrypted"` // TDE
	System    bool   `json:"system"`
}

// Traffic is what the running gateway saw over the span asked for.
type Traffic struct {
	Requested string    `json:"requested"` // --since
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Complete  bool      `json:"complete"` // the gateway ran the whole span
	// Logins by listener and the TLS version of each leg ("none" without).
	Logins []LoginCount `json:"logins"`
	// Refusals by listener and reason: the gateway's error numbers, and
	// connections closed before a login (refused_encryption, ...).
	Refusals []ReasonCount `json:"refusals"`
	// HTTPS requests by TLS version.
	HTTPSRequests []ReasonCount `json:"https_requests_by_tls"`
}

// LoginCount is a number of logins with the same listener, legs and outcome.
type LoginCount struct {
	Listener    string  `json:"listener"`
	ClientTLS   string  `json:"client_tls"`
	UpstreamTLS string  `json:"upstream_tls"`
	Outcome     string  `json:"outcome"`
	N           float64 `json:"n"`
}

// ReasonCount is a number of events with the same subject and reason.
type ReasonCount struct {
	Subject string  `json:"subject"`
	Reason  string  `json:"reason"`
	N       float64 `json:"n"`
}

// add appends a check and keeps the summary and verdict.
func (r *Report) add(c Check) {
	r.Checks = append(r.Checks, c)
	switch c.Verdict {
	case Pass:
		r.Summary.Pass++
	case Fail:
		r.Summary.Fail++
	case Warn:
		r.Summary.Warn++
	case Info:
		r.Summary.Info++
	case NotRun:
		r.Summary.NotRun++
	}
	if r.Summary.Fail > 0 {
		r.Verdict = Fail
	}
}
