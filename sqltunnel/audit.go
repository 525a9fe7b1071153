package sqltunnel

import (
	"crypto/tls"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/tlsmgr"
)

// auditRecord collects, along a connection, what the "sql login" line
// reports. It holds only values that are safe to log: the LOGIN7 fields
// tds.Login7 exposes never include the password, the SSPI blob, FedAuth
// tokens or session-recovery data.
type auditRecord struct {
	dialect          string // dialectTDS7 | dialectTDS8
	clientEncryption string // the client's PRELOGIN ENCRYPTION, as sent
	answered         string // the gateway's answer
	clientTLS        *tls.ConnectionState
	plain            bool // no TLS by policy: a loopback client under allow_plaintext_loopback
	mars             bool // MARS agreed by client and upstream

	login      *tds.Login7
	loginStart time.Time
	steps      loginSteps

	upstreamTLS *tls.ConnectionState
	// routedTo is the server the configured upstream routed the login to
	// (host:port), when the gateway followed the route; routedDatabase the
	// database the route named (enhanced routing), if any.
	routedTo       string
	routedDatabase string

	outcome     outcome
	reason      string
	errorNumber int32          // the gateway's ERROR number, for refusals
	serverError *tds.ErrorInfo // the upstream's ERROR, for failed logins
	ack         *tds.LoginAck
	packetSize  int // negotiated by ENVCHANGE; 0 if not

	logged bool // the "sql login" line has been written
}

func (a *auditRecord) refusal(r *refusal) {
	a.outcome, a.reason, a.errorNumber = r.outcome, r.message, r.number
}

func (a *auditRecord) upstream(u *upstream) {
	if u != nil {
		a.upstreamTLS = u.tlsState
		if !u.securedAt.IsZero() {
			a.steps.upstreamTLS = u.securedAt.Sub(u.s.start)
		}
	}
}

// loginSteps are when each step of a login ended, counted from the moment
// the client's connection was accepted (0: not reached). The "sql login"
// line carries them as steps_ms, so that a slow login shows where its time
// went: the upstream's TCP connect and PRELOGIN round trip (before the
// client's PRELOGIN can be answered: the answer carries the server's
// options), the client's TLS handshake and, meanwhile on a helper
// goroutine, the upstream's; the client's LOGIN7; how long the session then
// waited for the upstream; the upstream's reply to the login.
type loginSteps struct {
	upstreamPrelogin time.Duration
	clientTLS        time.Duration
	upstreamTLS      time.Duration
	login7           time.Duration
	upstreamWait     time.Duration // a length of time, not a moment
	loginReply       time.Duration
}

func (st *loginSteps) fields() []zap.Field {
	var f []zap.Field
	for _, s := range []struct {
		name string
		d    time.Duration
	}{
		{"upstream_prelogin", st.upstreamPrelogin},
		{"client_tls", st.clientTLS},
		{"upstream_tls", st.upstreamTLS},
		{"login7", st.login7},
		{"upstream_wait", st.upstreamWait},
		{"login_reply", st.loginReply},
	} {
		if s.d > 0 {
			f = append(f, zap.Float64(s.name, float64(s.d.Microseconds())/1000))
		}
	}
	return f
}

// loginDone records the upstream's final login reply: a LOGINACK, or its
// refusal of the login.
func (a *auditRecord) loginDone(r *loginReply) {
	if r.ack != nil {
		a.outcome, a.ack, a.packetSize = outcomeOK, r.ack, r.packetSize
		return
	}
	a.outcome, a.serverError = outcomeLoginFailed, r.err
	if r.err == nil {
		a.reason = "the upstream ended the login reply without LOGINACK or ERROR"
	}
}

// logLogin writes the "sql login" line of a login attempt, once: later
// calls do nothing.
func (s *session) logLogin() {
	a := &s.audit
	if a.logged {
		return
	}
	a.logged = true
	up := s.l.cfg.Upstream
	f := make([]zap.Field, 0, 32)
	f = append(f,
		zap.String("dialect", a.dialect),
		zap.String("client_encryption", a.clientEncryption),
		zap.String("encryption_answer", a.answered),
	)
	f = appendTLS(f, "client", a.clientTLS)
	if l := a.login; l != nil {
		f = append(f,
			zap.String("user", l.UserName),
			zap.String("database", l.Database),
			zap.String("app", l.AppName),
			zap.String("client_host", l.HostName),
			zap.String("library", l.Library),
			zap.String("server_name", l.ServerName),
			zap.Stringer("tds_version", l.TDSVersion),
			zap.Uint32("packet_size", l.PacketSize),
			zap.Stringer("auth", l.Auth()),
			zap.Bool("read_only_intent", l.ReadOnlyIntent()),
		)
	}
	f = append(f,
		zap.String("upstream", up.Address),
		zap.String("upstream_encryption", string(up.Encryption)),
		zap.String("upstream_verify", s.l.verifyMode),
	)
	if a.routedTo != "" {
		f = append(f, zap.String("routed_to", a.routedTo))
		if a.routedDatabase != "" {
			f = append(f, zap.String("routed_database", a.routedDatabase))
		}
	}
	f = appendTLS(f, "upstream", a.upstreamTLS)
	if a.upstreamTLS != nil {
		f = append(f, zap.Bool("upstream_tls_resumed", a.upstreamTLS.DidResume))
	}
	if a.outcome == "" {
		a.outcome = outcomeUnknown
	}
	f = append(f, zap.Bool("mars", a.mars), zap.String("outcome", string(a.outcome)))
	if a.reason != "" {
		f = append(f, zap.String("reason", a.reason))
	}
	if a.errorNumber != 0 {
		f = append(f, zap.Int32("error_number", a.errorNumber))
	}
	if e := a.serverError; e != nil {
		f = append(f,
			zap.Int32("error_number", e.Number),
			zap.Uint8("error_class", e.Class),
			zap.Uint8("error_state", e.State),
			zap.String("error_message", e.Message),
		)
	}
	if ack := a.ack; ack != nil {
		f = append(f,
			zap.Stringer("server_tds_version", ack.TDSVersion),
			zap.Stringer("server_version", ack.ProgVersion),
		)
	}
	if a.packetSize != 0 {
		f = append(f, zap.Int("negotiated_packet_size", a.packetSize))
	}
	f = append(f, zap.Duration("login_duration", time.Since(a.loginStart)))
	if st := a.steps.fields(); len(st) > 0 {
		f = append(f, zap.Dict("steps_ms", st...))
	}
	s.log.Info("sql login", f...)
	s.l.opts.metrics.login(s.l.cfg.Name, a.outcome, tlsLabel(a.clientTLS), tlsLabel(a.upstreamTLS), a.errorNumber)
}

// tlsLabel is a leg's TLS version for the metrics: "none" without TLS.
func tlsLabel(cs *tls.ConnectionState) string {
	if cs == nil {
		return "none"
	}
	return tlsmgr.HandshakeVersion(cs.Version)
}

// appendTLS adds side_tls_version and side_tls_cipher ("none" without TLS).
func appendTLS(f []zap.Field, side string, cs *tls.ConnectionState) []zap.Field {
	if cs == nil {
		return append(f, zap.String(side+"_tls_version", "none"), zap.String(side+"_tls_cipher", "none"))
	}
	return append(f,
		zap.String(side+"_tls_version", tls.VersionName(cs.Version)),
		zap.String(side+"_tls_cipher", tls.CipherSuiteName(cs.CipherSuite)),
	)
}
