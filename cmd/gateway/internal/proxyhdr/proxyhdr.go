// Package proxyhdr accepts the PROXY protocol (v1 and v2) that a TCP load
// balancer (AWS NLB, HAProxy in TCP mode) puts before each connection, so
// that the gateway's logs, audit lines, metrics and X-Forwarded-For name
// the real client instead of the balancer. The parsing is
// github.com/pires/go-proxyproto's.
//
// Only the balancers' addresses (proxy_protocol.trusted) may send a
// header: a connection from a trusted address must carry one; one from
// any other address that carries one anyway (a client forging its address)
// is closed. Each refusal is logged once, naming the peer and the reason.
//
// It does not decide anything about TLS or TDS: it wraps the listening
// socket of the HTTPS front and of each SQL listener.
package proxyhdr

import (
	"errors"
	"net"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// HeaderTimeout bounds how long a connection may take to send its header.
const HeaderTimeout = 5 * time.Second

// Wrapper returns a function that wraps a listening socket as cfg says, or
// nil when the PROXY protocol is off; listener names it in log lines.
func Wrapper(cfg configs.ProxyProtocol, name string, logger *zap.Logger) (func(net.Listener) net.Listener, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	trusted, err := parse(cfg.Trusted)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	log := logger.Named("proxy_protocol").With(zap.String("listener", name))
	policy := func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
		if ap, err := netipOf(o.Upstream); err == nil {
			for _, p := range trusted {
				if p.Contains(ap) {
					return proxyproto.REQUIRE, nil
				}
			}
		}
		// Direct clients may still connect; a header from them is refused.
		return proxyproto.REJECT, nil
	}
	return func(ln net.Listener) net.Listener {
		return &listener{Listener: &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: HeaderTimeout}, log: log}
	}, nil
}

// listener logs the connections whose header the policy refused.
type listener struct {
	net.Listener
	log *zap.Logger
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		return c, nil
	}
	return &conn{Conn: pc, pc: pc, log: l.log}, nil
}

// conn reports, at its first read, a header that was refused.
type conn struct {
	net.Conn
	pc   *proxyproto.Conn
	log  *zap.Logger
	once sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() { c.report(err) })
	}
	return n, err
}

func (c *conn) report(err error) {
	peer := c.pc.Raw().RemoteAddr()
	switch {
	case errors.Is(err, proxyproto.ErrSuperfluousProxyHeader):
		c.log.Warn("proxy protocol header from an untrusted address; closing",
			zap.Stringer("peer", peer), zap.String("reason", "only the addresses in proxy_protocol.trusted may send a header"))
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		c.log.Warn("connection from a trusted load balancer without a proxy protocol header; closing",
			zap.Stringer("peer", peer), zap.String("reason", "proxy_protocol.enabled requires a header from the trusted addresses"))
	case isHeaderError(err):
		c.log.Warn("malformed proxy protocol header; closing", zap.Stringer("peer", peer), zap.Error(err))
	}
}

func isHeaderError(err error) bool {
	for _, e := range []error{proxyproto.ErrCantReadVersion1Header, proxyproto.ErrInvalidLength, proxyproto.ErrLineMustEndWithCrlf,
		proxyproto.ErrCantReadProtocolVersionAndCommand, proxyproto.ErrUnsupportedProtocolVersionAndCommand,
		proxyproto.ErrUnsupportedAddressFamilyAndProtocol, proxyproto.ErrInvalidAddress, proxyproto.ErrInvalidPortNumber} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Peer is the balancer's address of a connection that came through one,
// else nil: for logs that name both.
func Peer(c net.Conn) net.Addr {
	if pc, ok := c.(*conn); ok && pc.pc.ProxyHeader() != nil {
		return pc.pc.Raw().RemoteAddr()
	}
	return nil
}
