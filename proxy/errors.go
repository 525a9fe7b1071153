package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/tlsmgr"
)

// errorKind names why an upstream request failed, as logged in error_kind.
type errorKind string

const (
	kindTimeout        errorKind = "timeout"            // dial, TLS handshake or idle timeout
	kindRefused        errorKind = "connection_refused" // nothing listens on the upstream port
	kindUnreachable    errorKind = "unreachable"        // no route to host or network
	kindDNS            errorKind = "dns"                // the upstream name does not resolve
	kindTLS            errorKind = "tls"                // https:// upstream failed verification or handshake
	kindClosed         errorKind = "connection_closed"  // reset, or closed before a full response
	kindClientCanceled errorKind = "client_canceled"    // the client went away (or shutdown cut it)
	kindTooLarge       errorKind = "request_too_large"  // the body passed max_request_body
	kindBadBody        errorKind = "bad_request_body"   // the client's body was malformed or cut short
	kindOther          errorKind = "other"
)

// statusClientClosed is nginx's 499: the client closed the request before
// the upstream answered. It is only logged; nobody is left to read it.
const statusClientClosed = 499

// kindInfo is the one place where error kinds map to what the client sees.
var kindInfo = map[errorKind]struct {
	status int
	body   string
}{
	kindTimeout:        {http.StatusGatewayTimeout, bodyTimeout},
	kindRefused:        {http.StatusBadGateway, bodyDown},
	kindUnreachable:    {http.StatusBadGateway, bodyDown},
	kindDNS:            {http.StatusBadGateway, bodyDown},
	kindTLS:            {http.StatusBadGateway, bodyTLS},
	kindClosed:         {http.StatusBadGateway, bodyDown},
	kindClientCanceled: {statusClientClosed, ""},
	kindTooLarge:       {http.StatusRequestEntityTooLarge, bodyTooLarge},
	kindBadBody:        {http.StatusBadRequest, bodyBadRequest},
	kindOther:          {http.StatusBadGateway, bodyDown},
}

const (
	bodyDown         = "502 Bad Gateway: the application server is not responding.\n"
	bodyTLS          = "502 Bad Gateway: the application server's certificate could not be verified.\n"
	bodyTimeout      = "504 Gateway Timeout: the application server did not respond in time.\n"
	bodyTooLarge     = "413 Request Entity Too Large: the request body is larger than this site accepts.\n"
	bodyBadRequest   = "400 Bad Request: the request body is malformed or incomplete.\n"
	bodyMisdirected  = "421 Misdirected Request: this connection was set up for another site name; reconnect.\n"
	bodyCertRequired = "403 Forbidden: a client certificate is required.\n"
)

// classify maps an error from the upstream round trip to its kind.
func classify(err error) errorKind {
	var (
		tooBig  *http.MaxBytesError
		badBody *clientBodyError
		upVer   *tlsmgr.VerifyError
		dnsErr  *net.DNSError
		netErr  net.Error
		verErr  *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &tooBig):
		return kindTooLarge
	case errors.Is(err, context.Canceled):
		return kindClientCanceled
	case errors.As(err, &badBody):
		return kindBadBody
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return kindTimeout
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return kindTimeout
		}
		return kindDNS
	case isRefused(err):
		return kindRefused
	case isUnreachable(err):
		return kindUnreachable
	case errors.As(err, &netErr) && netErr.Timeout():
		return kindTimeout
	case errors.As(err, &upVer), errors.As(err, &verErr), errors.As(err, &recErr), errors.As(err, &alert),
		errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &invErr):
		return kindTLS
	case isReset(err), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return kindClosed
	default:
		return kindOther
	}
}

// isDialError reports whether err happened while connecting, so that no byte
// of the request reached the upstream and another one may be tried.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// safeError is err's text without the request URL that *url.Error prefixes:
// the query string may carry patient identifiers and must not be logged.
func safeError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// errorHandler answers requests whose upstream round trip failed.
type errorHandler struct {
	log *zap.Logger
}

// serve is the ErrorHandler of every site's ReverseProxy: short page for the
// client, one log line for the operator naming the site, the upstream, the
// error kind and the client. Passive health has already counted the failure
// (roundtrip.go).
func (eh *errorHandler) serve(w http.ResponseWriter, r *http.Request, err error) {
	kind := classify(err)
	info := kindInfo[kind]
	rs := stateFrom(r.Context())

	level := zap.ErrorLevel
	switch kind {
	case kindClientCanceled, kindTooLarge:
		level = zap.DebugLevel
	case kindBadBody:
		level = zap.InfoLevel // the client's fault: nothing for the operator to fix
	}
	if ce := eh.log.Check(level, "upstream request failed"); ce != nil {
		fields := []zap.Field{
			zap.String("error_kind", string(kind)),
			zap.String("error", safeError(err)),
			zap.Int("status", info.status),
			zap.String("remote", r.RemoteAddr),
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
		}
		if rs != nil {
			fields = append(fields, zap.String("site", rs.site.name))
			if rs.upstream != nil {
				fields = append(fields, zap.String("upstream", rs.upstream.raw))
			}
		}
		ce.Write(fields...)
	}

	if kind == kindClientCanceled {
		w.WriteHeader(info.status)
		return
	}
	var s *site
	if rs != nil {
		s = rs.site
	}
	writeError(w, s, info.status, info.body)
}

// writeError answers with a short plain-text page. Whatever the application
// or a 1xx response left in the header map does not describe it.
func writeError(w http.ResponseWriter, s *site, status int, body string) {
	h := w.Header()
	clear(h)
	if s != nil && s.hsts != "" {
		h.Set(headerHSTS, s.hsts)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
