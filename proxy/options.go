package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Defaults of the options below. They stop slow-header (slowloris) clients
// and wedged upstreams without ever cutting a long download or upload: there
// is deliberately no ReadTimeout or WriteTimeout on the HTTPS listener.
const (
	// DefaultDrainTimeout bounds the graceful part of Serve's shutdown.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultReadHeaderTimeout bounds the TLS handshake and the reading of
	// each request's headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes client keep-alive connections idle this long.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes caps a request's headers; larger ones get 431.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultDialTimeout bounds connecting (and the TLS handshake, for
	// https:// upstreams) to an upstream.
	DefaultDialTimeout = 10 * time.Second
	// DefaultUpstreamIdleTimeout cuts an upstream connection on which
	// nothing was read or written for this long. It is longer than IIS's own
	// executionTimeout (110 s) so that a page IIS would still finish is never
	// cut; a streaming response only needs a byte now and then.
	DefaultUpstreamIdleTimeout = 5 * time.Minute
	// DefaultWriteIdleTimeout cuts a client connection on which a write
	// (a response, a WebSocket message) has made no progress for this long:
	// a client that stopped reading. A slow reader is never cut.
	DefaultWriteIdleTimeout = 5 * time.Minute

	// Upstream connection pool sizing (not configurable).
	// maxIdleConnsPerHost must cover the requests in flight to one
	// upstream at peak: a connection that finds the idle pool full is
	// closed after its response and the next request dials anew. With 64,
	// 50 HTTP/2 clients of 10 streams each made the gateway open ~1,800
	// upstream connections a second and spend 19% of its CPU dialing
	// (test/bench h2); with 1024, 3%. Idle ones still close after
	// upstreamIdleConnTime.
	maxIdleConnsPerHost   = 1024
	upstreamIdleConnTime  = 90 * time.Second
	expectContinueTimeout = time.Second

	// redirectTimeout bounds whole requests on the redirect listener, which
	// never carries long transfers.
	redirectTimeout = 30 * time.Second
	// closeGrace bounds how long Serve waits for handlers to return after it
	// has closed their connections at the end of the drain.
	closeGrace = 5 * time.Second
)

// Option customises a Server; see the With functions.
type Option func(*options)

type options struct {
	drainTimeout        time.Duration
	challenge           func(http.Handler) http.Handler
	readHeaderTimeout   time.Duration
	idleTimeout         time.Duration
	maxHeaderBytes      int
	dialTimeout         time.Duration
	upstreamIdleTimeout time.Duration
	writeIdleTimeout    time.Duration
	upstreamTLS         *tls.Config
	redirectPort        int
	stickyKeyFile       string
	wrapListener        func(net.Listener) net.Listener
	shared              SharedStore
	http1Only           HTTP1OnlyStore
	metrics             *Metrics
}

func defaultOptions() options {
	return options{
		drainTimeout:        DefaultDrainTimeout,
		readHeaderTimeout:   DefaultReadHeaderTimeout,
		idleTimeout:         DefaultIdleTimeout,
		maxHeaderBytes:      DefaultMaxHeaderBytes,
		dialTimeout:         DefaultDialTimeout,
		upstreamIdleTimeout: DefaultUpstreamIdleTimeout,
		writeIdleTimeout:    DefaultWriteIdleTimeout,
	}
}

// WithDrainTimeout bounds how long Serve lets in-flight requests (upgraded
// WebSocket connections included) finish after its context ends; the rest are
// then cut. Zero or negative cuts them at once. Default DefaultDrainTimeout.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) { o.drainTimeout = max(d, 0) }
}

// WithChallengeHandler wraps the redirect listener's handler, so that an
// ACME HTTP-01 solver can answer /.well-known/acme-challenge/ and pass every
// other request on. Nil (the default) leaves the redirect handler as is, as
// does a wrap function that returns nil.
func WithChallengeHandler(wrap func(http.Handler) http.Handler) Option {
	return func(o *options) { o.challenge = wrap }
}

// WithReadHeaderTimeout bounds the TLS handshake and the reading of request
// headers on both listeners. Zero or negative means no bound; do not do that
// in production. Default DefaultReadHeaderTimeout.
func WithReadHeaderTimeout(d time.Duration) Option {
	return func(o *options) { o.readHeaderTimeout = d }
}

// WithIdleTimeout closes client keep-alive connections idle this long. Zero
// or negative means they are never closed for idleness. Default
// DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.idleTimeout = d }
}

// WithMaxHeaderBytes caps the size of request headers; larger requests get
// 431. Zero or negative means net/http's default (1 MiB). Default
// DefaultMaxHeaderBytes.
func WithMaxHeaderBytes(n int) Option {
	return func(o *options) { o.maxHeaderBytes = n }
}

// WithDialTimeout bounds connecting to an upstream, and the TLS handshake for
// https:// upstreams. A dial that times out gets the client a 504. Zero or
// negative means no bound beyond the operating system's. Default
// DefaultDialTimeout.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = max(d, 0) }
}

// WithUpstreamIdleTimeout cuts an upstream connection on which nothing has
// been read or written for d: waiting for response headers (504), a stalled
// response body (the client's response is aborted), or an idle upgraded
// WebSocket. It is never an overall limit: a transfer that keeps moving runs
// for as long as it takes. Zero or negative disables it. Default
// DefaultUpstreamIdleTimeout.
func WithUpstreamIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.upstreamIdleTimeout = max(d, 0) }
}

// WithWriteIdleTimeout cuts a client connection when a write to it makes
// no progress for d (the client stopped reading). Zero or negative disables
// it. Default DefaultWriteIdleTimeout.
func WithWriteIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.writeIdleTimeout = max(d, 0) }
}

// WithStickyKeyFile names the file holding the key of sticky-session
// cookies (created, mode 0600, when missing), so that cookies stay valid
// across restarts and between gateways that share it. Only read when a site
// sets sticky.cookie. Empty (the default) uses a random key per process:
// after a restart each client is balanced afresh once.
func WithStickyKeyFile(path string) Option {
	return func(o *options) { o.stickyKeyFile = path }
}

// WithHTTP1OnlyFile keeps the names of the sites found to use Windows
// authentication (offered only HTTP/1.1, see HTTP1OnlyStore) in the JSON
// file at path, so that they are offered only HTTP/1.1 from the first
// handshake after a restart. Empty (the default) keeps them in memory:
// after a restart each is found again by its probe or a client.
func WithHTTP1OnlyFile(path string) Option {
	return func(o *options) {
		o.http1Only = nil
		if path != "" {
			o.http1Only = HTTP1OnlyFile(path)
		}
	}
}

// WithListenerWrapper wraps the HTTPS listening socket before it serves,
// for the PROXY protocol of a load balancer in front: the connections it
// returns give the real client as RemoteAddr (the access log and
// X-Forwarded-For follow). Nil (the default) serves the socket as is.
func WithListenerWrapper(wrap func(net.Listener) net.Listener) Option {
	return func(o *options) { o.wrapListener = wrap }
}

// WithHTTP1OnlyStore is WithHTTP1OnlyFile with any store, such as one
// shared by the gateways of a cluster. Nil keeps the names in memory.
func WithHTTP1OnlyStore(st HTTP1OnlyStore) Option {
	return func(o *options) { o.http1Only = st }
}

// WithUpstreamTLSConfig is the client TLS configuration for the https://
// upstreams of sites that set no upstream_tls key (roots, server name,
// pinning through VerifyConnection). It is cloned. Nil (the default) builds
// one with tlsmgr.ClientTLSConfig from each site's upstream_tls, which
// without keys verifies against the system roots and the upstream URL's host
// name.
func WithUpstreamTLSConfig(c *tls.Config) Option {
	return func(o *options) {
		if c != nil {
			c = c.Clone()
		}
		o.upstreamTLS = c
	}
}

// WithRedirectPort sets the HTTPS port put into redirect Locations when the
// port clients reach differs from the bound one (port forwarding, NAT).
// Port 443 is left out of the Location. Zero (the default) uses the port
// http.listen is bound to.
func WithRedirectPort(port int) Option {
	return func(o *options) { o.redirectPort = port }
}

// WithMetrics makes the Server count requests, connections, handshakes and
// upstream health in m, which may be shared with other Servers (a reload
// that disables and re-enables the front). Nil (the default) records
// nothing; the access log is written either way.
func WithMetrics(m *Metrics) Option {
	return func(o *options) { o.metrics = m }
}
