package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// The TLS handshake counter is shared vocabulary: the HTTPS front and every
// TDS listener count their client handshakes in one metric family,
// gateway_tls_handshakes_total, told apart by the constant label protocol
// ("https" or "tds") and the label listener. A Prometheus registry accepts
// one family from several collectors only when the help text and label names
// agree, so both build it here.

// HandshakeOK is the result label of a handshake that succeeded.
const HandshakeOK = "ok"

// NewHandshakeCounter returns the handshake counter for one protocol, with
// the labels listener, version ("1.2", "1.3"; "none" when the handshake
// failed before a version was agreed) and result (HandshakeOK or a
// HandshakeFailure reason). The caller includes it in its own collector.
func NewHandshakeCounter(protocol string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "gateway_tls_handshakes_total",
		Help:        "TLS handshakes with clients, by protocol, listener, negotiated version and result (ok, or why it failed).",
		ConstLabels: prometheus.Labels{"protocol": protocol},
	}, []string{"listener", "version", "result"})
}

// HandshakeVersion is the version label for a negotiated TLS version.
func HandshakeVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	case 0:
		return "none"
	}
	return "other"
}

// HandshakeFailure names why a server-side handshake failed, as a bounded
// set of metric label values:
//
//	timeout                     the client was too slow (handshake deadline)
//	client_closed               EOF or reset before the handshake finished
//	client_rejected_certificate the client sent a certificate alert (it does not trust ours)
//	protocol_version            no TLS version in common (an old client)
//	no_shared_cipher            no cipher suite or curve in common
//	no_certificate              no certificate for the server name asked for
//	not_tls                     the first bytes were not TLS (plain HTTP to the HTTPS port)
//	client_certificate          the client's own certificate was missing or did not verify
//	alert                       another alert from the client
//	other                       anything else
func HandshakeFailure(err error) string {
	var (
		ne    net.Error
		alert tls.AlertError
		rhe   tls.RecordHeaderError
	)
	switch {
	case err == nil:
		return "other"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed):
		return "client_closed"
	case errors.As(err, &rhe):
		return "not_tls"
	case errors.As(err, &alert):
		return alertReason(tls.AlertError(alert).Error())
	}
	return HandshakeFailureText(err.Error())
}

// HandshakeFailureText is HandshakeFailure for an error known only by its
// text, such as net/http's "http: TLS handshake error from ADDR: TEXT" log
// line (the HTTPS front's only report of a failed handshake).
func HandshakeFailureText(msg string) string {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("timeout", "deadline exceeded"):
		return "timeout"
	case m == "eof" || has("unexpected eof", "connection reset", "broken pipe", "use of closed network connection", ": eof"):
		return "client_closed"
	case has("client sent an http request", "does not look like a tls handshake", "oversized record", "unsupported sslv2"):
		return "not_tls"
	case has("remote error:"):
		return alertReason(m)
	case has("unsupported versions", "protocol version"):
		return "protocol_version"
	case has("no cipher suite", "no supported elliptic curves", "no ecdhe curve", "no mutually supported", "no common"):
		return "no_shared_cipher"
	case has("no certificate for server name", "no certificates configured"):
		return "no_certificate"
	case has("client didn't provide a certificate", "failed to verify certificate", "client certificate", "certificate required"):
		return "client_certificate"
	}
	return "other"
}

// alertReason maps the text of an alert the client sent to a reason.
func alertReason(text string) string {
	t := strings.ToLower(text)
	switch {
	case strings.Contains(t, "bad certificate"), strings.Contains(t, "unknown certificate authority"),
		strings.Contains(t, "certificate unknown"), strings.Contains(t, "unsupported certificate"),
		strings.Contains(t, "certificate expired"), strings.Contains(t, "certificate revoked"),
		strings.Contains(t, "access denied"):
		return "client_rejected_certificate"
	case strings.Contains(t, "protocol version"):
		return "protocol_version"
	case strings.Contains(t, "handshake failure"), strings.Contains(t, "insufficient security"):
		return "no_shared_cipher"
	}
	return "alert"
}
