package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// newTransport is the pooled HTTP/1.1 client shared by every site.
//
// IIS gets HTTP/1.1 only: HTTP/2 to the upstream would gain little on a LAN
// and older IIS versions do not speak it in clear text. There is no overall
// response timeout, only the idle one of idleConn, so long downloads, uploads
// and event streams are never cut while they move.
func newTransport(o *options) *http.Transport {
	d := &net.Dialer{Timeout: o.dialTimeout, KeepAlive: 30 * time.Second}
	dial := d.DialContext
	if idle := o.upstreamIdleTimeout; idle > 0 {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, timeout: idle}, nil
		}
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	return &http.Transport{
		// Never route the IIS leg through HTTP_PROXY/HTTPS_PROXY from the
		// environment: the upstream is on the local network by design.
		Proxy:               nil,
		DialContext:         dial,
		TLSClientConfig:     o.upstreamTLS,
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

// idleConn is an upstream connection that fails a Read once nothing has been
// read or written for timeout. Each Read, and each Write (a request, or an
// upload in progress), pushes the read deadline forward; a Read blocked in
// the Transport's read loop sees the new deadline (net.Conn allows extending
// a pending deadline). The result is an idle timeout, never an overall one.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		// An error here means the connection is closed; the next Read
		// reports it.
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return n, err
}

// bufferPool recycles the 32 KiB copy buffers of httputil.ReverseProxy.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.pool.Put(&buf)
}
