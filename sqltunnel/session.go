package sqltunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// tlsRecordHandshake is the first byte of a TLS handshake record: a client
// that starts with it speaks TDS 8 (TLS first), MS-TDS 2.1.
const tlsRecordHandshake = 0x16

// session is one client connection, from accept to close. Its serve method
// runs on one goroutine; closeAll may be called from the drain at any time.
type session struct {
	l      *Listener
	id     uint64
	raw    net.Conn // the accepted TCP connection
	log    *zap.Logger
	start  time.Time
	remote net.Addr

	mu     sync.Mutex
	conns  []net.Conn // raw connections closed by closeAll
	closed bool

	audit                auditRecord
	toUpstream, toClient byteCount // TDS bytes written to each side
	// result is why the connection ended before a login outcome was
	// known (handshake_failed, malformed, ...), for the metrics.
	result string
}

// byteCount counts a session's bytes in one direction, and the listener's
// Prometheus counter for that direction when there is one.
type byteCount struct {
	n atomic.Int64
	c prometheus.Counter
}

func (b *byteCount) Add(n int64) int64 {
	if b.c != nil {
		b.c.Add(float64(n))
	}
	return b.n.Add(n)
}

func (b *byteCount) Load() int64 { return b.n.Load() }

func newSession(l *Listener, c net.Conn) *session {
	id := l.nextID.Add(1)
	s := &session{
		l:      l,
		id:     id,
		raw:    c,
		start:  time.Now(),
		remote: c.RemoteAddr(),
		conns:  []net.Conn{c},
	}
	s.toUpstream.c, s.toClient.c = l.bytesUp, l.bytesDown
	s.log = l.log.With(zap.Stringer("remote", s.remote), zap.Uint64("conn_id", id))
	return s
}

// track registers a raw connection to be closed with the session; if the
// session is already closed it is closed at once.
func (s *session) track(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return
	}
	s.conns = append(s.conns, c)
}

// closeAll closes every raw connection of the session. It is idempotent and
// safe to call from another goroutine: blocked reads and writes return.
func (s *session) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// serve runs the connection: dialect by first byte, pre-login, login, relay.
func (s *session) serve(ctx context.Context) {
	defer func() {
		s.l.finish(s)
		s.count()
		s.log.Debug("connection ended", zap.Duration("duration", time.Since(s.start)))
	}()
	defer s.closeAll()
	defer func() {
		// A last resort: the code below is written not to panic, but one bad
		// connection must never take the listener down.
		if r := recover(); r != nil {
			s.log.Error("panic while serving a connection; closed it",
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		}
	}()

	hsDeadline := deadline(s.start, s.l.opts.handshakeTimeout)
	_ = s.raw.SetDeadline(hsDeadline)
	hctx, cancel := withDeadline(ctx, hsDeadline)
	defer cancel()

	pc, first, err := peek(s.raw)
	if err != nil {
		if errors.Is(err, io.EOF) {
			// Port probes (load balancers, monitoring) connect and close.
			s.log.Debug("connection closed before sending anything")
			s.ended("client_closed")
		} else {
			s.readFailed("reading the first byte", err)
		}
		return
	}
	switch first {
	case tlsRecordHandshake:
		s.serveTDS8(ctx, hctx, pc)
	case byte(tds.PacketPrelogin):
		s.serveTDS7(ctx, hctx, pc)
	case byte(tds.PacketLogin7):
		s.malformed("LOGIN7 before PRELOGIN", nil)
	default:
		s.log.Warn("not a TDS client; closing", zap.String("first_byte", fmt.Sprintf("0x%02x", first)))
		s.ended("not_tds")
	}
}

// ended notes why the connection ended before a login outcome, once.
func (s *session) ended(result string) {
	if s.result == "" {
		s.result = result
	}
}

// count adds the finished connection to the listener's metrics.
func (s *session) count() {
	m := s.l.opts.metrics
	if m == nil {
		return
	}
	a := &s.audit
	outcome := a.outcome
	if outcome == "" {
		outcome = s.result
	}
	if outcome == "" {
		outcome = "client_closed"
	}
	dialect := a.dialect
	if dialect == "" {
		dialect = "unknown"
	}
	negotiated := "none"
	switch {
	case a.clientTLS != nil:
		negotiated = "tls"
	case a.plain:
		negotiated = "plain"
	}
	m.connection(s.l.cfg.Name, dialect, encryptionLabel(a.clientEncryption), negotiated, outcome)
}

// malformed logs a connection closed for bad or out-of-order input.
func (s *session) malformed(reason string, err error) {
	fields := []zap.Field{zap.String("reason", reason)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	s.log.Warn("malformed TDS input; closing", fields...)
	s.ended("malformed")
}

// readFailed logs a read that ended the pre-login or login phase: a peer
// that went away or timed out is not malformed input.
func (s *session) readFailed(what string, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		s.log.Info("client closed the connection", zap.String("during", what))
		s.ended("client_closed")
	case errors.As(err, &ne) && ne.Timeout():
		s.log.Warn("client timed out; closing", zap.String("during", what), zap.Error(err))
		s.ended("timeout")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		s.log.Info("client connection ended", zap.String("during", what), zap.Error(err))
		s.ended("client_closed")
	default:
		s.malformed(what, err)
	}
}

func withDeadline(ctx context.Context, d time.Time) (context.Context, context.CancelFunc) {
	if d.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, d)
}

// peekConn replays the first byte read from a connection, so the dialect can
// be chosen before TLS or the TDS reader sees the stream.
type peekConn struct {
	net.Conn
	first []byte
}

func peek(c net.Conn) (*peekConn, byte, error) {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, 0, err
	}
	return &peekConn{Conn: c, first: b[:]}, b[0], nil
}

func (c *peekConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 && len(p) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// leg is one side of a session: conn carries TDS packets (the raw or peeked
// connection, or a *tls.Conn over it) and raw is the TCP connection beneath.
type leg struct {
	conn net.Conn
	raw  net.Conn
}

// closeWrite finishes the sending side of l: a TLS close_notify, then a TCP
// FIN, leaving the receiving side open.
func (l leg) closeWrite() {
	if tc, ok := l.conn.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if cw, ok := l.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// lingerClose closes l after giving the peer a moment to read what was just
// written: closing a socket with unread input resets it, and a reset can
// destroy the ERROR reply before the client has read it.
func lingerClose(l leg) {
	_ = l.conn.SetDeadline(time.Now().Add(refuseLinger))
	l.closeWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(l.conn, 64<<10))
	_ = l.conn.Close()
}

func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
