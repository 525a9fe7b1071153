package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// newTransport is an HTTP/1.1 client toward one upstream.
//
// IIS gets HTTP/1.1 only: HTTP/2 to the upstream would gain little on a LAN,
// older IIS versions do not speak it in clear text, and NTLM cannot work over
// it. There is no overall response timeout, only the idle one of idleConn, so
// long downloads, uploads and event streams are never cut while they move.
//
// onDial is upstreamDialer's.
func newTransport(o *options, tlsCfg *tls.Config, onDial func(net.Conn) error) *http.Transport {
	dial := upstreamDialer(o, onDial)
	var protos http.Protocols
	protos.SetHTTP1(true)
	return &http.Transport{
		// Never route the IIS leg through HTTP_PROXY/HTTPS_PROXY from the
		// environment: the upstream is on the local network by design.
		Proxy:               nil,
		DialContext:         dial,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: o.dialTimeout,
		ForceAttemptHTTP2:   false,
		Protocols:           &protos,
		MaxIdleConnsPerHost: maxIdleConnsPerHost,
		IdleConnTimeout:     upstreamIdleConnTime,
		// Wait this long for "100 Continue" before sending a request body
		// anyway (RFC 9110, section 10.1.1).
		ExpectContinueTimeout: expectContinueTimeout,
		// Pass Accept-Encoding and compressed bodies through untouched
		// instead of letting the Transport ask for gzip and decode it.
		DisableCompression: true,
	}
}

// upstreamDialer dials upstream connections with the dial timeout, TCP
// keep-alives and the idle timeout of idleConn. onDial, when not nil, sees
// every new connection before it is used and may refuse it (the connection
// is then closed and the dial fails).
func upstreamDialer(o *options, onDial func(net.Conn) error) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.dialTimeout, KeepAlive: 30 * time.Second}
	idle := o.upstreamIdleTimeout
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if idle > 0 {
			c = &idleConn{Conn: c, timeout: idle}
		}
		if onDial != nil {
			if err := onDial(c); err != nil {
				_ = c.Close()
				return nil, err
			}
		}
		return c, nil
	}
}

// upstreamPool holds the transports toward one upstream: the shared pool,
// a no-keep-alive one for connection-bound credentials that must not enter
// the pool, and (with upstream_tls.sni_from_host) one shared pool per TLS
// server name, so that a connection verified for one name never carries a
// request for another.
type upstreamPool struct {
	opts    *options
	shared  *http.Transport
	oneShot *http.Transport
	// fast sends the requests h1Eligible accepts (h1client.go); the shared
	// transport the others.
	fast *h1Client
	// tlsFor builds the client TLS configuration for a server name; nil
	// for http:// upstreams and when the name does not depend on the
	// request.
	tlsFor func(serverName string) (*tls.Config, error)

	mu     sync.Mutex
	byName map[string]*http.Transport
}

// maxSNITransports bounds the per-name pools of an sni_from_host upstream;
// further names (a wildcard site's long tail) get connections that are not
// kept alive.
const maxSNITransports = 64

func newUpstreamPool(o *options, u *url.URL, baseTLS *tls.Config, tlsFor func(string) (*tls.Config, error)) *upstreamPool {
	p := &upstreamPool{opts: o, tlsFor: tlsFor, shared: newTransport(o, baseTLS, nil)}
	p.oneShot = newTransport(o, baseTLS, nil)
	p.oneShot.DisableKeepAlives = true
	p.fast = newH1Client(o, u, baseTLS, upstreamDialer(o, nil))
	return p
}

// roundTripper is where a pooled request goes: the h1Client for the
// common request (no body, no upgrade) when the connection's TLS does not
// depend on the client's Host, else the transport for host.
func (p *upstreamPool) roundTripper(host string, req *http.Request) (http.RoundTripper, error) {
	if (p.tlsFor == nil || host == "") && h1Eligible(req) {
		return p.fast, nil
	}
	return p.transport(host)
}

// transport returns the pooled transport for a request whose client asked
// for host (a host name without port; "" when unknown).
func (p *upstreamPool) transport(host string) (*http.Transport, error) {
	if p.tlsFor == nil || host == "" {
		return p.shared, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.byName[host]; ok {
		return tr, nil
	}
	cfg, err := p.tlsFor(host)
	if err != nil {
		return nil, err
	}
	tr := newTransport(p.opts, cfg, nil)
	if len(p.byName) >= maxSNITransports {
		tr.DisableKeepAlives = true
		return tr, nil
	}
	if p.byName == nil {
		p.byName = map[string]*http.Transport{}
	}
	p.byName[host] = tr
	return tr, nil
}

// dedicated returns a transport that holds at most one connection, for
// one client connection alone (see pin). onDial records that connection.
func (p *upstreamPool) dedicated(host string, onDial func(net.Conn) error) (*http.Transport, error) {
	cfg := p.shared.TLSClientConfig
	if p.tlsFor != nil && host != "" {
		var err error
		if cfg, err = p.tlsFor(host); err != nil {
			return nil, err
		}
	}
	tr := newTransport(p.opts, cfg, onDial)
	tr.MaxConnsPerHost = 1
	tr.MaxIdleConnsPerHost = 1
	// The connection lives as long as the client's; clientConn.Close ends it.
	tr.IdleConnTimeout = 0
	return tr, nil
}

func (p *upstreamPool) closeIdle() {
	p.shared.CloseIdleConnections()
	p.fast.closeIdle()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tr := range p.byName {
		tr.CloseIdleConnections()
	}
}

// idleConn is an upstream connection that fails a Read once nothing has been
// read or written for timeout. Reads and writes (a request, or an upload in
// progress) push the read deadline forward; a Read blocked in the
// Transport's read loop sees the new deadline (net.Conn allows extending a
// pending deadline). The result is an idle timeout, never an overall one.
// The deadline moves at most every timeout/16: setting it costs a timer
// update, and a busy connection reads and writes thousands of times a
// second, so the timeout holds to within a sixteenth.
type idleConn struct {
	net.Conn
	timeout time.Duration
	set     atomic.Int64 // when the deadline was last moved, Unix ns
}

func (c *idleConn) touch() error {
	now := time.Now()
	if last := c.set.Load(); last != 0 && now.UnixNano()-last < int64(c.timeout/16) {
		return nil
	}
	c.set.Store(now.UnixNano())
	return c.Conn.SetReadDeadline(now.Add(c.timeout))
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.touch(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		// An error here means the connection is closed; the next Read
		// reports it.
		_ = c.touch()
	}
	return n, err
}

// bufferPool recycles the 32 KiB copy buffers of httputil.ReverseProxy.
// It holds array pointers, which enter and leave the pool without an
// allocation (a *[]byte would cost one per Put).
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if p, ok := b.pool.Get().(*[copyBufferSize]byte); ok {
		return p[:]
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	b.pool.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}
