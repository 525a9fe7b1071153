// Package audit produces the evidence `gateway audit` writes for an
// auditor: one report, as JSON (a documented schema, Report) and as a
// self-contained HTML page that prints on A4, stating with figures that
// every connection to IIS and SQL Server crossed the network encrypted and
// authenticated, and what is still at risk.
//
// It checks from outside, as a client would: each HTTPS and SQL listener
// (TLS versions and cipher suites accepted, ALPN, the certificate chain
// for every configured name, HSTS and the redirect; what a SQL listener
// answers to clients that ask for no or login-only encryption), each
// upstream (reachable, how it is verified, its certificate, the TLS
// version negotiated, whether SQL Server forces encryption itself, plain
// http:// legs), SQL Server's own view through an optional read-only login
// (every connection's encryption and address, TDE per database), and,
// when a gateway runs, what it saw over a span (logins by the TLS of both
// legs, refusals by reason, HTTPS requests by TLS version). Each check has
// a verdict and, when it fails, what to change, naming the configuration
// key.
//
// It changes nothing: it reads the configuration and storage, connects,
// and asks. It never writes a password, a certificate key or a session
// token into the report.
package audit
