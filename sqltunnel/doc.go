// Package sqltunnel is the TDS listener and relay that puts verified TLS in
// front of Microsoft SQL Server. A Listener accepts SQL clients, enforces the
// client encryption policy (docs/architecture.md, "TDS encryption policy":
// TLS inside PRELOGIN for TDS 7.x, TLS first for TDS 8 strict, never clear
// text or login-only encryption except for an allowed loopback sidecar
// client), connects to the upstream with encryption and certificate
// verification, forwards the login unchanged, and then relays TDS packets
// (or MARS SMP packets) in both directions, one packet per TLS write.
//
// A session is a sequence of phases run by one function (session.run):
// negotiate, client TLS, read LOGIN7, upstream, login exchange, relay. Each
// returns its result or an error that ends the session, and the session's
// outcome (outcome.go) is the one value the audit line, the logs and the
// metrics report.
//
// It fails closed: when the upstream cannot be reached, does not encrypt, or
// presents a certificate that does not verify, the client still completes its
// own handshake and gets, in reply to its LOGIN7, a TDS ERROR (class 20,
// server "gateway", numbers ErrorNumber*) whose message names the problem;
// the login itself is never sent. Each login attempt is logged once ("sql
// login") with safe fields only: never passwords, SSPI blobs, FedAuth tokens
// or session-recovery data.
//
// For operations, a Listener counts connections, logins, handshakes and
// bytes in a Metrics collector shared by every listener (metrics.go), and a
// configuration reload replaces listeners without refusing a connection:
// Retire stops one accepting while its open sessions go on, and hands its
// socket to the replacement's Adopt when the address stays (retire.go).
//
// It does not authenticate users, rewrite SQL, follow routing ENVCHANGEs
// (it refuses them), answer SQL Browser queries (sqltunnel/browser does),
// or obtain certificates (tlsmgr does); the wire codec lives in
// sqltunnel/tds and the TDS 7.x handshake framing in sqltunnel/tdstls.
// Integrated authentication crosses it untouched, but NTLM/Kerberos Extended
// Protection (channel binding) cannot survive TLS termination; SQL logins
// and FedAuth are unaffected.
package sqltunnel
