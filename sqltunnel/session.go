package sqltunnel

import (
	"context"
	"crypto/tls"
	"errors"
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

// serve runs the connection to its end and accounts for it: the metrics
// count it by its outcome, the listener forgets it, and a panic anywhere in
// it closes this connection only.
func (s *session) serve(ctx context.Context) {
	out := outcomeClientClosed
	defer func() {
		s.l.finish(s)
		s.count(out)
		s.log.Debug("connection ended", zap.Duration("duration", time.Since(s.start)))
	}()
	defer s.closeAll()
	defer func() {
		// A last resort: the code below is written not to panic, but one bad
		// connection must never take the listener down.
		if r := recover(); r != nil {
			s.log.Error("panic while serving a connection; closed it",
				zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			out = outcomeUnknown
			if s.audit.login != nil {
				s.logLogin() // once: does nothing if the line was written
				out = s.audit.outcome
			}
		}
	}()
	out = s.run(ctx)
}

// run takes the connection through the phases of a session, in order, and
// returns how it ended:
//
//  1. negotiate: the dialect, from the first byte, and the PRELOGIN
//     exchange. The upstream is dialled and sent its PRELOGIN first, so that
//     the client's answer can carry what depends on the server (MARS,
//     FEDAUTHREQUIRED, NONCE).
//  2. client TLS: TLS inside PRELOGIN packets (TDS 7.x), or TLS first (TDS
//     8, which therefore runs phase 2 before phase 1, dialling the upstream
//     meanwhile). The upstream's own handshake runs at the same time, on a
//     helper goroutine.
//  3. read LOGIN7: the client's login, decoded for the audit line (never its
//     password).
//  4. upstream: wait for the upstream's handshake and certificate check.
//  5. login exchange: LOGIN7 forwarded unchanged, the reply and any SSPI or
//     FedAuth round trips relayed. When the upstream routes the client
//     elsewhere and upstream.routing is follow, the gateway connects to the
//     routed server (phase 4 again, for that server) and replays the login
//     there.
//  6. relay: TDS packets both ways until either side ends.
//
// Until a LOGIN7 has arrived, a failure is an *ended, logged once. From
// then on it is a *refusal, sent to the client as an ERROR token in reply to
// its LOGIN7 (the login is then never forwarded), or an *abandoned login;
// either way the "sql login" audit line is written exactly once, before the
// client hears the outcome.
func (s *session) run(ctx context.Context) outcome {
	hsDeadline := deadline(s.start, s.l.opts.handshakeTimeout)
	_ = s.raw.SetDeadline(hsDeadline)
	hctx, cancel := withDeadline(ctx, hsDeadline)
	defer cancel()

	pc, dialect, err := s.readDialect()
	if err != nil {
		return s.fail(leg{}, err)
	}
	var neg *negotiation
	var client leg
	if dialect == dialectTDS8 {
		dialing := s.goUpstream(ctx, s.newUpstream(), (*upstream).dial)
		if client, err = s.clientTLS8(hctx, pc); err != nil {
			dialing.abort()
			return s.fail(leg{}, err)
		}
		if neg, err = s.negotiate(ctx, client.conn, dialing); err != nil {
			return s.fail(leg{}, err)
		}
	} else {
		if neg, err = s.negotiate(ctx, pc, nil); err != nil {
			return s.fail(leg{}, err)
		}
		if client, err = s.clientTLS7(hctx, pc, neg); err != nil {
			neg.upstream.abort()
			return s.fail(leg{}, err)
		}
	}

	login, err := s.readLogin7(client)
	defer login.clear() // its password is obfuscated, not encrypted
	if err == nil && neg.plan == planRefuseStrict {
		err = strictRequired(s.l.cfg.Name)
	}
	if err != nil {
		neg.upstream.abort()
		return s.fail(client, err)
	}
	up, err := s.upstreamReady(neg.upstream)
	if err != nil {
		return s.fail(client, err)
	}
	reply, err := s.loginExchange(client, up, login)
	var route *routed
	if errors.As(err, &route) {
		// upstream.routing: follow, to a server routing_allow lists: the
		// gateway goes there itself and replays the login, so the client
		// never learns the route.
		if up, err = s.followRoute(ctx, up, neg.prelogin, route); err == nil {
			reply, err = s.loginExchange(client, up, login)
		}
	}
	login.done()
	if err != nil {
		return s.fail(client, err)
	}
	if reply.ack == nil {
		// The upstream refused the login (18456 and friends) and closes
		// the session after this reply, which the client now has.
		lingerClose(client)
		return outcomeLoginFailed
	}
	// After a login with MARS on both sides, framing is SMP.
	s.relay(client, leg{conn: up.conn, raw: up.raw}, reply.relayPacketSize(login.login), s.audit.mars)
	return outcomeOK
}

// fail ends the session on a phase's error and returns its outcome. An
// *ended is logged; a *refusal is written in the audit line and sent to the
// client (client is the encrypted leg it arrived on); an *abandoned login
// is written in the audit line.
func (s *session) fail(client leg, err error) outcome {
	var (
		e *ended
		r *refusal
		a *abandoned
	)
	switch {
	case errors.As(err, &e):
		e.log(s.log)
		return e.outcome
	case errors.As(err, &r):
		s.refuse(client, r)
		return r.outcome
	case errors.As(err, &a):
		if a.line != nil {
			a.line.log(s.log)
		}
		if !s.audit.logged {
			s.audit.outcome, s.audit.reason = a.outcome, a.reason
		}
		s.logLogin()
		return s.audit.outcome
	}
	// Every phase returns one of the three; anything else is a bug, and
	// still ends the connection with a line that says so.
	s.log.Error("session ended on an unclassified error", zap.Error(err))
	return outcomeUnknown
}

// Dialects, by the first byte the client sends (MS-TDS 2.1).
const (
	dialectTDS7 = "tds7" // PRELOGIN (0x12) in clear; TLS, if any, inside PRELOGIN packets
	dialectTDS8 = "tds8" // a TLS handshake record (0x16): TLS first, PRELOGIN inside it
)

// readDialect reads the first byte and returns the connection with that
// byte put back, and the dialect it announces.
func (s *session) readDialect() (*peekConn, string, error) {
	pc, first, err := peek(s.raw)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, "", closedBeforeSending()
		}
		return nil, "", readFailed("reading the first byte", err)
	}
	switch first {
	case tlsRecordHandshake:
		s.audit.dialect = dialectTDS8
	case byte(tds.PacketPrelogin):
		s.audit.dialect = dialectTDS7
	case byte(tds.PacketLogin7):
		return nil, "", malformedInput("LOGIN7 before PRELOGIN", nil)
	default:
		return nil, "", notTDS(first)
	}
	return pc, s.audit.dialect, nil
}

// count adds the finished connection to the listener's metrics.
func (s *session) count(out outcome) {
	m := s.l.opts.metrics
	if m == nil {
		return
	}
	a := &s.audit
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
	m.connection(s.l.cfg.Name, dialect, encryptionLabel(a.clientEncryption), negotiated, out)
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
