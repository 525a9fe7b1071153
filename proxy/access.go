package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/tlsmgr"
)

// logRequest writes the access log line of a finished request (logger
// "access", message "request", level info) and counts it in the metrics.
//
// The line never carries the query string unless the site sets
// access_log_query (clinical applications put patient identifiers in it),
// and never a header: no Cookie, no Authorization, no Referer (which holds
// another page's query).
func (srv *Server) logRequest(r *http.Request, s *site, rs *requestState, rec *recorder, body *countingBody, start time.Time) {
	d := time.Since(start)
	status := rec.status
	if status == 0 && rs.upstream != nil && isUpgrade(r) {
		// A successful upgrade (WebSocket) is written on the hijacked
		// connection, past the recorder.
		status = http.StatusSwitchingProtocols
	}
	var in int64
	if body != nil {
		in = body.n.Load()
	}
	var tlsVersion uint16
	if r.TLS != nil {
		tlsVersion = r.TLS.Version
	}
	srv.metrics.request(s, r.Method, status, d, in, rec.bytes, tlsVersion)

	ce := srv.access.Check(zapcore.InfoLevel, "request")
	if ce == nil {
		return
	}
	fp := fieldPool.Get().(*[]zap.Field)
	defer func() { clear(*fp); fieldPool.Put(fp) }()
	fields := (*fp)[:0]
	fields = append(fields,
		zap.String("site", s.name),
		zap.String("method", r.Method),
		zap.String("host", r.Host),
		zap.String("path", r.URL.Path),
	)
	if s.accessQuery && r.URL.RawQuery != "" {
		fields = append(fields, zap.String("query", r.URL.RawQuery))
	}
	fields = append(fields,
		zap.String("proto", r.Proto),
		zap.Int("status", status),
		zap.Int64("bytes", rec.bytes),
		zap.Int64("request_bytes", in),
		zap.Duration("duration", d),
		zap.String("remote", r.RemoteAddr),
	)
	if r.TLS != nil {
		fields = append(fields, zap.String("tls_version", tlsmgr.HandshakeVersion(r.TLS.Version)))
	}
	if rs.upstream != nil {
		fields = append(fields, zap.String("upstream", rs.upstream.raw))
		if rs.pinned {
			fields = append(fields, zap.Bool("pinned", true))
		}
	}
	ce.Write(fields...)
	*fp = fields
}

// fieldPool recycles the field slices of access log lines: zap encodes a
// line before Write returns and keeps no reference to its fields.
var fieldPool = sync.Pool{New: func() any {
	f := make([]zap.Field, 0, 16)
	return &f
}}

func isUpgrade(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// countingBody counts the bytes read from a request body. The transport
// reads it on its own goroutine, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// connState is the HTTPS server's ConnState hook. It counts each completed
// TLS handshake once, at the connection's first activity or at its close:
// the first moment net/http lets us see a handshake that is over. (A
// handshake that fails is counted from net/http's error log, handshakeFailed:
// it reports nothing else.) Counting in VerifyConnection would be too early:
// a TLS 1.3 client rejects our certificate after it has run.
func (srv *Server) connState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateActive, http.StateIdle, http.StateClosed, http.StateHijacked:
	default:
		return
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	cc, ok := tc.NetConn().(*clientConn)
	if !ok || cc.handshakeCounted.Load() {
		return
	}
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete || cc.handshakeCounted.Swap(true) {
		return
	}
	srv.metrics.handshake(tlsmgr.HandshakeVersion(cs.Version), tlsmgr.HandshakeOK)
}

// handshakeFailed counts a failed handshake that net/http reported in its
// error log, with the reason its text gives.
func (srv *Server) handshakeFailed(detail string) {
	srv.metrics.handshake(tlsmgr.HandshakeVersion(0), tlsmgr.HandshakeFailureText(detail))
}
