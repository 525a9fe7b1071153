package sqltunnel

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Defaults of the options below.
const (
	// DefaultMaxConns caps the client connections one listener serves at
	// once; connections over the cap are closed as soon as they are accepted.
	DefaultMaxConns = 1000
	// DefaultHandshakeTimeout bounds the client leg's pre-login phase: from
	// accept through PRELOGIN and the TLS handshake (TDS 7.x or TDS 8).
	DefaultHandshakeTimeout = 15 * time.Second
	// DefaultLoginTimeout bounds the login phase: from the end of the client's
	// handshake until the upstream's final login reply has been relayed,
	// SSPI and FedAuth round trips included.
	DefaultLoginTimeout = 30 * time.Second
	// DefaultDialTimeout bounds connecting to the upstream: the TCP connect,
	// the PRELOGIN exchange and the TLS handshake together.
	DefaultDialTimeout = 10 * time.Second
	// DefaultDrainTimeout bounds how long Serve lets sessions finish after
	// its context ends before it closes them.
	DefaultDrainTimeout = 30 * time.Second

	// halfCloseTimeout bounds how long a session lives on after one side
	// has finished sending: TDS has no use for half-open connections, so the
	// other side only gets time to flush what it was sending.
	halfCloseTimeout = 30 * time.Second
	// refuseLinger bounds how long a refused client is given to read the
	// ERROR reply before its connection is closed.
	refuseLinger = 2 * time.Second
	// acceptBackoffMin and acceptBackoffMax bound the pause after a failed
	// Accept (EMFILE and the like), doubled on each consecutive failure.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Dialer connects to the upstream SQL Server. *net.Dialer implements it.
// DialContext must honour ctx's deadline and cancellation.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Option customises a Listener; see the With functions.
type Option func(*options)

type options struct {
	upstreamTLS      *tls.Config
	dialer           Dialer
	resolver         Resolver
	instances        InstanceResolver
	wrapListener     func(net.Listener) net.Listener
	maxConns         int
	handshakeTimeout time.Duration
	loginTimeout     time.Duration
	dialTimeout      time.Duration
	drainTimeout     time.Duration
	metrics          *Metrics
}

func defaultOptions() options {
	return options{
		dialer:           &net.Dialer{},
		resolver:         net.DefaultResolver,
		maxConns:         DefaultMaxConns,
		handshakeTimeout: DefaultHandshakeTimeout,
		loginTimeout:     DefaultLoginTimeout,
		dialTimeout:      DefaultDialTimeout,
		drainTimeout:     DefaultDrainTimeout,
	}
}

// ServerTLS is where a listener's client-facing TLS configuration comes
// from: New calls it once with no protocol (TLS inside PRELOGIN, TDS 7.x)
// and once with "tds/8.0" (TDS 8 strict, TLS first). It is typically
//
//	func(p ...string) *tls.Config { return certs.NamedServerTLSConfig(cfg.Hostname, p...) }
//
// with certs a *tlsmgr.Manager. The configurations are cloned; the version
// limit of TDS 7.x (TLS 1.2) is applied by the listener.
type ServerTLS func(nextProtos ...string) *tls.Config

// WithUpstreamTLS sets the TLS configuration used toward the upstream,
// normally built by tlsmgr.ClientTLSConfig from the listener's upstream
// settings. The configuration is cloned. Nil (the default) makes New build
// it with tlsmgr.ClientTLSConfig(cfg.Upstream.TLS(), logger); it is not
// needed for upstream.encryption disabled_loopback.
func WithUpstreamTLS(c *tls.Config) Option {
	return func(o *options) { o.upstreamTLS = c }
}

// WithDialer sets how upstream connections are made. Nil (the default) is a
// *net.Dialer with the operating system's keep-alive settings.
func WithDialer(d Dialer) Option {
	return func(o *options) {
		if d == nil {
			d = &net.Dialer{}
		}
		o.dialer = d
	}
}

// WithResolver sets how upstream host names are resolved. A name with
// several addresses is dialled on all of them at once. Nil (the default) is
// net.DefaultResolver.
func WithResolver(r Resolver) Option {
	return func(o *options) {
		if r == nil {
			r = net.DefaultResolver
		}
		o.resolver = r
	}
}

// WithInstanceResolver sets how the port of an upstream named instance
// (upstream.address host\INSTANCE) is found. Nil (the default) asks the
// host's SQL Browser, keeping answers for browser.DefaultCacheTTL.
func WithInstanceResolver(r InstanceResolver) Option {
	return func(o *options) { o.instances = r }
}

// WithListenerWrapper wraps the listening socket for the accept loop, for
// the PROXY protocol of a load balancer in front: the connections it
// returns give the real client as RemoteAddr, which the logs, the "sql
// login" line and the loopback policy then use. The socket itself (what
// Retire hands over) stays unwrapped. Nil (the default) accepts on the
// socket as is.
func WithListenerWrapper(wrap func(net.Listener) net.Listener) Option {
	return func(o *options) { o.wrapListener = wrap }
}

// WithMaxConns caps the client connections served at once; the excess is
// closed immediately and logged at Warn naming the client. Zero or negative
// means no cap. Default DefaultMaxConns.
func WithMaxConns(n int) Option {
	return func(o *options) { o.maxConns = max(n, 0) }
}

// WithHandshakeTimeout bounds the client's pre-login phase (PRELOGIN and
// TLS). Zero or negative means no bound; do not do that in production.
// Default DefaultHandshakeTimeout.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = max(d, 0) }
}

// WithLoginTimeout bounds the login phase, from the end of the client's
// handshake until the upstream's final login reply is relayed. Zero or
// negative means no bound. Default DefaultLoginTimeout.
func WithLoginTimeout(d time.Duration) Option {
	return func(o *options) { o.loginTimeout = max(d, 0) }
}

// WithDialTimeout bounds connecting to the upstream (TCP connect, PRELOGIN
// exchange and TLS handshake). A client whose upstream cannot be reached in
// time gets a TDS ERROR naming the upstream. Zero or negative means no bound
// beyond the operating system's. Default DefaultDialTimeout.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = max(d, 0) }
}

// WithDrainTimeout bounds how long Serve lets sessions finish after its
// context ends; the rest are then closed and counted in a log line. Zero or
// negative closes them at once. Default DefaultDrainTimeout.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) { o.drainTimeout = max(d, 0) }
}

// deadline returns now+d, or the zero time (no deadline) when d is 0.
func deadline(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}

// WithMetrics makes the listener count its connections, logins, handshakes
// and bytes in m, which is shared by every listener of the process. Nil (the
// default) records nothing.
func WithMetrics(m *Metrics) Option {
	return func(o *options) { o.metrics = m }
}
