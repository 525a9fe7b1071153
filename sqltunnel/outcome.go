package sqltunnel

import (
	"errors"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// outcome is how a client connection ended: the "outcome" field of the
// "sql login" audit line and the outcome label of
// gateway_tds_logins_total and gateway_tds_connections_total. Every value
// the gateway reports is one of the constants below, so that the label set
// stays bounded and documented (README, Metrics).
type outcome string

// Outcomes of a login attempt: the connection got as far as a LOGIN7.
const (
	outcomeOK            outcome = "ok"
	outcomeLoginFailed   outcome = "login_failed"   // the upstream refused the login
	outcomeRefused       outcome = "refused"        // the gateway's policy said no
	outcomeUpstreamError outcome = "upstream_error" // the upstream could not be used safely
	outcomeClientGone    outcome = "client_gone"    // the client left during the login
)

// Outcomes of a connection that ended before its LOGIN7.
const (
	outcomeHandshakeFailed   outcome = "handshake_failed"
	outcomeRefusedEncryption outcome = "refused_encryption" // told to encrypt, the client did not
	outcomeMalformed         outcome = "malformed"
	outcomeNotTDS            outcome = "not_tds"
	outcomeClientClosed      outcome = "client_closed"
	outcomeTimeout           outcome = "timeout"
	outcomeOverLimit         outcome = "over_limit" // closed at accept: max_connections reached
)

// outcomeUnknown labels a login whose outcome was never set: only a panic
// in the login phase leaves one so.
const outcomeUnknown outcome = "unknown"

// ended is why a session ended before its login: its outcome, and the one
// log line that tells the operator why, naming the client (the session's
// logger carries remote and conn_id). A phase returns it; serve logs it.
type ended struct {
	outcome outcome
	level   zapcore.Level
	msg     string // constant, lowercase
	fields  []zap.Field
	err     error // the cause, if any; also logged
}

func (e *ended) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %s: %v", e.outcome, e.msg, e.err)
	}
	return fmt.Sprintf("%s: %s", e.outcome, e.msg)
}

func (e *ended) Unwrap() error { return e.err }

// log writes the line; nothing at all for a silent end.
func (e *ended) log(l *zap.Logger) {
	if ce := l.Check(e.level, e.msg); ce != nil {
		f := e.fields
		if e.err != nil {
			f = append(f[:len(f):len(f)], zap.Error(e.err))
		}
		ce.Write(f...)
	}
}

// malformedInput ends a session on bad or out-of-order input.
func malformedInput(reason string, err error) *ended {
	return &ended{outcome: outcomeMalformed, level: zapcore.WarnLevel, msg: "malformed TDS input; closing",
		fields: []zap.Field{zap.String("reason", reason)}, err: err}
}

// readFailed ends a session whose read (or write) during what failed: a
// peer that went away or timed out is not malformed input.
func readFailed(what string, err error) *ended {
	var ne net.Error
	during := []zap.Field{zap.String("during", what)}
	switch {
	case errors.Is(err, io.EOF):
		return &ended{outcome: outcomeClientClosed, level: zapcore.InfoLevel, msg: "client closed the connection", fields: during}
	case errors.As(err, &ne) && ne.Timeout():
		return &ended{outcome: outcomeTimeout, level: zapcore.WarnLevel, msg: "client timed out; closing", fields: during, err: err}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return &ended{outcome: outcomeClientClosed, level: zapcore.InfoLevel, msg: "client connection ended", fields: during, err: err}
	}
	return malformedInput(what, err)
}

// closedBeforeSending ends a connection that closed without a byte: port
// probes of load balancers and monitoring.
func closedBeforeSending() *ended {
	return &ended{outcome: outcomeClientClosed, level: zapcore.DebugLevel, msg: "connection closed before sending anything"}
}

func notTDS(first byte) *ended {
	return &ended{outcome: outcomeNotTDS, level: zapcore.WarnLevel, msg: "not a TDS client; closing",
		fields: []zap.Field{zap.String("first_byte", fmt.Sprintf("0x%02x", first))}}
}
