package sqltunnel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/tlsmgr"
)

// Error numbers of the ERROR tokens the gateway sends a client whose login it
// refuses. They lie in the range SQL Server leaves to user-defined messages
// (50000 and up), so they never collide with a server's own numbers, and
// none is in the lists of "transient" numbers drivers retry on. Every such
// ERROR has class 20 (fatal: the client closes the connection), state 1 and
// server name "gateway", and is followed by a DONE with the error bit; the
// message always starts with "gateway: ".
const (
	// ErrorNumberStrictRequired: a TDS 7.x client on a listener whose
	// client_encryption is strict.
	ErrorNumberStrictRequired int32 = 50901
	// ErrorNumberUpstreamUnreachable: the upstream could not be connected to.
	ErrorNumberUpstreamUnreachable int32 = 50902
	// ErrorNumberUpstreamNoEncryption: the upstream answered PRELOGIN
	// without full encryption (NOT_SUP, OFF), or with encryption where
	// disabled_loopback expects none.
	ErrorNumberUpstreamNoEncryption int32 = 50903
	// ErrorNumberUpstreamCertificate: the upstream's certificate did not
	// verify (untrusted, wrong name, pin mismatch).
	ErrorNumberUpstreamCertificate int32 = 50904
	// ErrorNumberUpstreamProtocol: the upstream failed otherwise (TLS
	// handshake, PRELOGIN, a login reply the gateway cannot read).
	ErrorNumberUpstreamProtocol int32 = 50905
	// ErrorNumberRoutingRefused: the upstream answered the login with a
	// routing ENVCHANGE, which would send the client around the gateway.
	ErrorNumberRoutingRefused int32 = 50906
	// ErrorNumberMalformedLogin: the client's LOGIN7 could not be decoded.
	ErrorNumberMalformedLogin int32 = 50907
	// ErrorNumberChannelBinding: the upstream refused an integrated
	// (NTLM/Kerberos) login with error 18452, which is what SQL Server
	// answers when its Extended Protection demands a channel binding: the
	// client bound its authentication to the gateway's TLS certificate, and
	// no binding can survive TLS termination.
	ErrorNumberChannelBinding int32 = 50908
)

const (
	errorClass      = 20 // fatal to the connection
	errorState      = 1
	errorServerName = "gateway"
	// maxErrorMessage keeps the message well inside US_VARCHAR and what
	// client libraries display.
	maxErrorMessage = 2000
)

// refusal is why a login is refused: an outcome for the audit, and the
// ERROR the client is sent.
type refusal struct {
	outcome outcome
	number  int32
	message string // for the client and the log; starts with "gateway: "
	err     error  // the cause, if any
}

func (r *refusal) Error() string { return r.message }
func (r *refusal) Unwrap() error { return r.err }

func newRefusal(outcome outcome, number int32, err error, format string, args ...any) *refusal {
	msg := "gateway: " + fmt.Sprintf(format, args...)
	if len(msg) > maxErrorMessage {
		msg = strings.ToValidUTF8(msg[:maxErrorMessage], "")
	}
	return &refusal{outcome: outcome, number: number, message: msg, err: err}
}

func strictRequired(listener string) *refusal {
	return newRefusal(outcomeRefused, ErrorNumberStrictRequired, nil,
		"listener %s requires TDS 8 strict encryption (Encrypt=Strict)", listener)
}

func malformedLogin(err error) *refusal {
	return newRefusal(outcomeRefused, ErrorNumberMalformedLogin, err, "malformed LOGIN7: %v", err)
}

func routingRefused(r tds.Routing) *refusal {
	return newRefusal(outcomeRefused, ErrorNumberRoutingRefused, nil,
		"upstream requested routing to %s, which would send the client around the gateway; set upstream.routing: follow and list the server in upstream.routing_allow to let the gateway follow it",
		routeAddr(r))
}

// routingRefusedBecause refuses a route upstream.routing: follow does not
// follow, saying why.
func routingRefusedBecause(r tds.Routing, why string) *refusal {
	return newRefusal(outcomeRefused, ErrorNumberRoutingRefused, nil,
		"upstream requested routing to %s; not followed: %s", routeAddr(r), why)
}

// channelBindingRefused replaces SQL Server's error 18452 to an integrated
// login, whose own text ("untrusted domain") does not say what to change.
func channelBindingRefused(addr string, e *tds.ErrorInfo) *refusal {
	return newRefusal(outcomeLoginFailed, ErrorNumberChannelBinding, nil,
		"upstream %s refused the integrated (NTLM/Kerberos) login with error 18452 (%s). "+
			"SQL Server answers this when its Extended Protection is Allowed or Required: the client bound its "+
			"authentication to the gateway's certificate, and a channel binding cannot pass through TLS termination. "+
			"Set Extended Protection to Off (SQL Server Configuration Manager, Protocols for the instance, Advanced), "+
			"or use SQL logins or Entra ID, which are not affected",
		addr, e.Message)
}

func upstreamUnreachable(addr string, err error) *refusal {
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamUnreachable, err, "upstream %s unreachable: %v", addr, err)
}

func upstreamNotLoopback(addr string, got net.Addr) *refusal {
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamNoEncryption, nil,
		"upstream %s connected to %s, which is not a loopback address; disabled_loopback refuses to send the login in clear text", addr, got)
}

func upstreamNoEncryption(addr, answered string) *refusal {
	if answered == tds.EncryptOff.String() {
		// OFF means login-only encryption: everything after the first
		// LOGIN7 packet would cross the network in clear text.
		return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamNoEncryption, nil,
			"upstream %s offers only login-only encryption (answered OFF); refusing to send the login", addr)
	}
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamNoEncryption, nil,
		"upstream %s does not support encryption (answered %s); refusing to send the login", addr, answered)
}

func upstreamWantsEncryption(addr, answered string) *refusal {
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamNoEncryption, nil,
		"upstream %s requires encryption (answered %s) but upstream.encryption is disabled_loopback; set it to required", addr, answered)
}

func upstreamProtocol(addr, what string, err error) *refusal {
	if err != nil {
		return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamProtocol, err, "upstream %s %s: %v", addr, what, err)
	}
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamProtocol, nil, "upstream %s %s", addr, what)
}

// upstreamIOFailed is an I/O failure after connecting: a timeout or a
// closed connection reads as such rather than as a protocol violation.
func upstreamIOFailed(addr, what string, err error) *refusal {
	return upstreamProtocol(addr, what+" failed", err)
}

// upstreamTLSFailed classifies a failed upstream handshake: certificate
// verification (tlsmgr's typed errors, or crypto/tls's own when the caller
// supplied a configuration without VerifyConnection) or anything else.
func upstreamTLSFailed(addr string, err error) *refusal {
	var ve *tlsmgr.VerifyError
	if errors.As(err, &ve) {
		return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamCertificate, err, "upstream %s %v", addr, ve)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		kind := tlsmgr.ErrUntrusted
		var he x509.HostnameError
		if errors.As(cve.Err, &he) {
			kind = tlsmgr.ErrNameMismatch
		}
		return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamCertificate, err, "upstream %s %v: %v", addr, kind, cve.Err)
	}
	return newRefusal(outcomeUpstreamError, ErrorNumberUpstreamProtocol, err, "upstream %s TLS handshake failed: %v", addr, err)
}

// refuse sends r to the client as an ERROR token and a DONE with the error
// bit, in reply to its LOGIN7 (in the LOGIN7's TDS version when it could be
// decoded), and closes the client leg. The audit line is written first, so
// that it exists by the time the client reads the refusal.
func (s *session) refuse(client leg, r *refusal) {
	var ver tds.TDSVersion
	if s.audit.login != nil {
		ver = s.audit.login.TDSVersion
	}
	s.audit.refusal(r)
	s.logLogin()
	payload, err := tds.ErrorReply(ver, tds.ErrorInfo{
		Number:     r.number,
		State:      errorState,
		Class:      errorClass,
		Message:    r.message,
		ServerName: errorServerName,
	})
	if err == nil {
		err = tds.NewWriter(client.conn).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: payload})
	}
	if err != nil {
		s.log.Debug("writing the ERROR reply failed", zap.Error(err))
	} else {
		s.toClient.Add(int64(len(payload)))
	}
	lingerClose(client)
}
