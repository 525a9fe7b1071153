package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Windows Integrated Authentication (NTLM, and Negotiate, which carries
// Kerberos or NTLM) authenticates the TCP connection, not the request: IIS
// runs the two or three legs of the handshake on one connection and then
// treats every later request on it as the authenticated user (MS-NTHT,
// RFC 4559 section 4). Behind a proxy that pools upstream connections, the
// legs land on different connections (the handshake fails) or, worse, an
// authenticated connection serves another client's requests as that user.
//
// So, for sites with windows_auth, a client connection that starts such a
// handshake is pinned: it gets its own upstream connection (a transport
// holding at most one) for the rest of its life, and every later request
// on the client connection goes there, never to the pool. A connection is
// pinned when the upstream answers 401 with an NTLM or Negotiate challenge,
// or when the client sends NTLM or Negotiate credentials. The pinned
// upstream connection is closed with the client connection.
//
// HTTP/2 multiplexes many requests, possibly of different tabs or users of
// a shared machine, over one connection, so connection-bound authentication
// cannot work on it (IIS and Kestrel refuse it too). net/http cannot send
// RST_STREAM HTTP_1_1_REQUIRED (RFC 9113 section 8.2.2) from a handler, so
// the gateway offers only HTTP/1.1 in ALPN for the names of a site known to
// use Windows authentication (http2.go: found by a probe before the first
// client, or remembered from an earlier run). When a site is found in
// traffic instead, by challenging an HTTP/2 request with NTLM or
// Negotiate, that request gets the 401 with a graceful GOAWAY (Connection:
// close), so that the browser's next request opens a new connection, over
// HTTP/1.1, where the handshake works. Credentials that do arrive over
// HTTP/2 are sent on a connection used for that request alone.

// isConnAuth reports whether an Authorization value, or one challenge of a
// WWW-Authenticate value, uses a connection-bound scheme.
func isConnAuth(v string) bool {
	v = strings.TrimLeft(v, " \t")
	scheme := v
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme = v[:i]
	}
	return strings.EqualFold(scheme, "NTLM") || strings.EqualFold(scheme, "Negotiate")
}

// hasConnAuth reports whether a request carries NTLM or Negotiate credentials.
func hasConnAuth(h http.Header) bool {
	for _, v := range h["Authorization"] {
		if isConnAuth(v) {
			return true
		}
	}
	return false
}

// challengesConnAuth reports whether a 401's WWW-Authenticate headers offer
// NTLM or Negotiate ("Negotiate, NTLM" in one header counts).
func challengesConnAuth(h http.Header) bool {
	for _, v := range h["Www-Authenticate"] {
		for part := range strings.SplitSeq(v, ",") {
			if isConnAuth(part) {
				return true
			}
		}
	}
	return false
}

// stripConnAuth removes NTLM and Negotiate credentials, for sites without
// windows_auth: on a pooled connection they would authenticate it for
// whichever client's request comes next.
func stripConnAuth(h http.Header) {
	if vs := h["Authorization"]; len(vs) > 0 && hasConnAuth(h) {
		kept := vs[:0:0]
		for _, v := range vs {
			if !isConnAuth(v) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(h, "Authorization")
		} else {
			h["Authorization"] = kept
		}
	}
}

// connListener wraps each accepted TCP connection in a clientConn, and
// counts it in the Server's open connections.
type connListener struct {
	net.Listener
	writeIdle time.Duration
	srv       *Server // nil outside a Server (tests of parts)
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &clientConn{Conn: c, writeIdle: l.writeIdle}
	if srv := l.srv; srv != nil {
		srv.conns.Add(1)
		srv.metrics.connAccepted()
		cc.onClose = func() { srv.conns.Add(-1) }
	}
	return cc, nil
}

// clientConn is one client TCP connection (below TLS). It carries the pins
// of connection-bound authentication and an idle timeout on writes: a
// client that stops reading is cut after writeIdle without progress, while
// a slow reader that keeps taking bytes is never cut.
type clientConn struct {
	net.Conn
	writeIdle time.Duration
	onClose   func() // called once, at the first Close; may be nil

	// handshakeCounted is set once the TLS handshake has been counted
	// (Server.connState).
	handshakeCounted atomic.Bool

	// fwd caches the forwarding headers of the connection's latest
	// client address and Host (setForwarded).
	fwd atomic.Pointer[forwardedFor]

	mu     sync.Mutex
	closed bool
	pins   []*pin // one per site, usually none or one
}

// forwarded returns the forwarding header values for remote and host,
// from the cache when they are the connection's latest.
func (c *clientConn) forwarded(remote, host string) *forwardedFor {
	if f := c.fwd.Load(); f != nil && f.remote == remote && f.host == host {
		return f
	}
	f := newForwarded(remote, host)
	c.fwd.Store(f)
	return f
}

// pin is a client connection's dedicated upstream connection for one site.
type pin struct {
	owner *clientConn
	site  *site
	up    *upstream
	tr    *http.Transport // holds at most one connection
	conn  net.Conn        // that connection, while it is open; guarded by clientConn.mu
}

var errClientGone = errors.New("client connection closed")

func (c *clientConn) Write(p []byte) (int, error) {
	if c.writeIdle > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeIdle))
	}
	return c.Conn.Write(p)
}

// Close closes the client connection and every pinned upstream connection.
func (c *clientConn) Close() error {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	pins := c.pins
	c.pins = nil
	c.mu.Unlock()
	if first && c.onClose != nil {
		c.onClose()
	}
	for _, p := range pins {
		p.close()
	}
	return c.Conn.Close()
}

// pinFor returns the connection's pin for s, or nil.
func (c *clientConn) pinFor(s *site) *pin {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pins {
		if p.site == s {
			return p
		}
	}
	return nil
}

// pinTo returns the connection's pin for s, creating one toward u if there
// is none. host is the client's Host (for sni_from_host upstreams).
func (c *clientConn) pinTo(s *site, u *upstream, host string) (*pin, error) {
	if p := c.pinFor(s); p != nil {
		return p, nil
	}
	p := &pin{owner: c, site: s, up: u}
	tr, err := u.pool.dedicated(host, func(conn net.Conn) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return errClientGone
		}
		// A redial after IIS closed the previous connection starts
		// unauthenticated: the client simply gets a new challenge.
		p.conn = conn
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.tr = tr
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClientGone
	}
	for _, q := range c.pins {
		if q.site == s { // pinned concurrently (HTTP/1.1 never does this)
			return q, nil
		}
	}
	c.pins = append(c.pins, p)
	s.log.Debug("client connection pinned to upstream",
		zap.String("site", s.name), zap.String("upstream", u.raw), zap.Stringer("remote", c.RemoteAddr()))
	return p, nil
}

// unpin drops the pin (its upstream went down) and closes its connection.
func (c *clientConn) unpin(p *pin) {
	c.mu.Lock()
	for i, q := range c.pins {
		if q == p {
			c.pins = append(c.pins[:i], c.pins[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	p.close()
}

func (p *pin) close() {
	p.tr.CloseIdleConnections()
	p.owner.mu.Lock()
	conn := p.conn
	p.conn = nil
	p.owner.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

type connKey struct{}

// withConn is the http.Server ConnContext hook: it finds the clientConn
// below the TLS connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

func connFrom(ctx context.Context) *clientConn {
	cc, _ := ctx.Value(connKey{}).(*clientConn)
	return cc
}
