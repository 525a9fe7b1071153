package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// h1Client sends the common request — no body, no upgrade — to one upstream
// over pooled HTTP/1.1 connections, writing the request with
// http.Request.Write and reading the response with http.ReadResponse on the
// handler's own goroutine. http.Transport does the same with two goroutines
// per connection and channel hand-offs on every request; this path skips
// them. Everything else (request bodies, upgrades, connection-bound
// credentials, per-name TLS pools) stays on http.Transport (transport.go).
//
// A connection is reused only when the exchange left it exactly at the
// start of the next response: the response body was read to its framed end
// (Content-Length or the last chunk), neither side asked to close, the
// response's length was not "until close", and no byte beyond the response
// was received. Anything else — an error, a body closed before its end, a
// cancelled request, a 101 to a request that did not ask for one, excess
// bytes — closes the connection. So one client's response can never be read
// as another's.
type h1Client struct {
	addr     string // host:port dialled
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	tls      *tls.Config // nil for http:// upstreams; ServerName set
	hsTime   time.Duration
	idleTime time.Duration // how long a connection may wait in the pool
	maxIdle  int

	mu   sync.Mutex
	idle []*h1Conn // most recently used last
}

// h1Eligible reports whether req can take the h1Client path.
func h1Eligible(req *http.Request) bool {
	return (req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.TransferEncoding) == 0 && len(req.Trailer) == 0 &&
		req.Method != http.MethodConnect && req.Header.Get("Upgrade") == ""
}

// newH1Client sends to the upstream at u (http or https, TLS per tlsCfg),
// dialling with dial.
func newH1Client(o *options, u *url.URL, tlsCfg *tls.Config, dial func(context.Context, string, string) (net.Conn, error)) *h1Client {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	c := &h1Client{addr: net.JoinHostPort(u.Hostname(), port), dial: dial, hsTime: o.dialTimeout,
		idleTime: upstreamIdleConnTime, maxIdle: maxIdleConnsPerHost}
	if u.Scheme == "https" {
		c.tls = &tls.Config{}
		if tlsCfg != nil {
			c.tls = tlsCfg.Clone()
		}
		if c.tls.ServerName == "" {
			// As http.Transport does: verify the upstream URL's host.
			c.tls.ServerName = u.Hostname()
		}
	}
	return c
}

// maxResponseHeaderBytes bounds a response's header section (http.Transport's
// default is 10 MiB; IIS's own limit for request headers is far lower).
const maxResponseHeaderBytes = 1 << 20

// max1xxResponses bounds the interim responses before the final one.
const max1xxResponses = 5

// peekAfter is how long a connection must have been idle before it is
// checked for an upstream close (h1alive_*.go) before use.
const peekAfter = time.Second

// errUnexpectedSwitch is a 101 answer to a request that asked no upgrade.
var errUnexpectedSwitch = errors.New("upstream switched protocols without an upgrade request")

// RoundTrip implements http.RoundTripper for requests h1Eligible accepts.
// A request that failed on a reused connection before any byte of a
// response arrived is sent once more on a new connection when it is
// replayable (GET, HEAD, OPTIONS, TRACE or an Idempotency-Key), as
// http.Transport does: the upstream may have closed the idle connection
// just as it was taken.
func (c *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	fresh := false
	for {
		pc, reused, err := c.get(req.Context(), fresh)
		if err != nil {
			return nil, err
		}
		res, err := pc.roundTrip(req)
		if err == nil {
			return res, nil
		}
		pc.close()
		if !reused || pc.gotBytes || !replayable(req) || req.Context().Err() != nil {
			return nil, err
		}
		fresh = true
	}
}

func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// get takes the most recently used live connection from the pool, or dials.
func (c *h1Client) get(ctx context.Context, fresh bool) (*h1Conn, bool, error) {
	if !fresh {
		for {
			pc := c.pop()
			if pc == nil {
				break
			}
			// A connection used a moment ago is not peeked at: the upstream
			// closing it just as it is taken is the race replays cover.
			if time.Since(pc.idleSince) < peekAfter || pc.alive() {
				return pc, true, nil
			}
			pc.close()
		}
	}
	pc, err := c.connect(ctx)
	return pc, false, err
}

func (c *h1Client) pop() *h1Conn {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	// The oldest come first: close those idle too long.
	expired := 0
	for expired < len(c.idle) && now.Sub(c.idle[expired].idleSince) > c.idleTime {
		c.idle[expired].close()
		expired++
	}
	if expired > 0 {
		n := copy(c.idle, c.idle[expired:])
		clear(c.idle[n:])
		c.idle = c.idle[:n]
	}
	if len(c.idle) == 0 {
		return nil
	}
	pc := c.idle[len(c.idle)-1]
	c.idle[len(c.idle)-1] = nil
	c.idle = c.idle[:len(c.idle)-1]
	return pc
}

// put returns a connection whose exchange ended cleanly to the pool.
func (c *h1Client) put(pc *h1Conn) {
	pc.idleSince = time.Now()
	c.mu.Lock()
	if len(c.idle) < c.maxIdle {
		c.idle = append(c.idle, pc)
		pc = nil
	}
	c.mu.Unlock()
	if pc != nil {
		pc.close()
	}
}

// closeIdle closes the pooled connections; new ones are made as needed.
func (c *h1Client) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

func (c *h1Client) connect(ctx context.Context) (*h1Conn, error) {
	raw, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	conn := raw
	if c.tls != nil {
		tc := tls.Client(raw, c.tls)
		hctx, cancel := context.WithTimeout(ctx, c.hsTime)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		conn = tc
	}
	pc := &h1Conn{client: c, conn: conn, raw: raw, sys: rawConnOf(raw)}
	pc.lr.pc = pc
	pc.abortFn, pc.peekFn = pc.abort, pc.peek
	pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
	pc.bw = bufio.NewWriterSize(conn, 4<<10)
	return pc, nil
}

// h1Conn is one upstream connection and the state of its exchange.
type h1Conn struct {
	client    *h1Client
	conn      net.Conn // what requests are written to (TLS or not)
	raw       net.Conn // the TCP connection under it
	lr        limitedReader
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time

	// sys is raw's file descriptor access, for the liveness check of a
	// pooled connection (h1alive_*.go); nil where unavailable.
	sys syscall.RawConn

	gotBytes bool        // a byte of a response arrived in this exchange
	stop     func() bool // stops the cancellation watch of this exchange
	// abortFn and peekFn are abort and peek bound once, so that an
	// exchange does not allocate them; peekOK is peek's answer.
	abortFn func()
	peekFn  func(fd uintptr) bool
	peekOK  bool
}

// abort makes the exchange's blocked I/O return: its request was cancelled.
func (pc *h1Conn) abort() { _ = pc.conn.SetDeadline(aLongTimeAgo) }

// limitedReader reads the connection, at most n bytes while n >= 0 (the
// header section), unbounded once n < 0.
type limitedReader struct {
	pc *h1Conn
	n  int64
}

var errResponseHeaderTooLarge = fmt.Errorf("upstream response header section larger than %d bytes", maxResponseHeaderBytes)

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if r.n > 0 && int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.pc.conn.Read(p)
	if n > 0 {
		r.pc.gotBytes = true
		if r.n > 0 {
			r.n -= int64(n)
		}
	}
	return n, err
}

// aLongTimeAgo is a deadline that makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	pc.gotBytes = false
	pc.stop = context.AfterFunc(req.Context(), pc.abortFn)
	if err := req.Write(pc.bw); err != nil {
		pc.stop()
		return nil, err
	}
	if err := pc.bw.Flush(); err != nil {
		pc.stop()
		return nil, err
	}
	res, err := pc.readResponse(req)
	if err != nil {
		pc.stop()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	keep := !res.Close && !req.Close && res.ProtoAtLeast(1, 1) &&
		(res.ContentLength >= 0 || len(res.TransferEncoding) > 0)
	if res.Body == http.NoBody || res.Body == nil {
		// Nothing to read: the exchange is over.
		pc.finish(keep)
		res.Body = http.NoBody
		return res, nil
	}
	// A new body each exchange: ReverseProxy closes the one it was given
	// after the connection may already carry the next exchange.
	res.Body = &h1Body{pc: pc, rc: res.Body, keep: keep}
	return res, nil
}

// readResponse reads the final response, passing 1xx ones to the
// request's trace (ReverseProxy relays 103 Early Hints from there).
func (pc *h1Conn) readResponse(req *http.Request) (*http.Response, error) {
	pc.lr.n = maxResponseHeaderBytes
	defer func() { pc.lr.n = -1 }()
	for i := 0; ; i++ {
		res, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			return nil, errUnexpectedSwitch
		case res.StatusCode >= 200:
			return res, nil
		case i+1 >= max1xxResponses:
			return nil, errors.New("upstream sent too many 1xx responses")
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
		}
		pc.lr.n = maxResponseHeaderBytes
	}
}

// finish ends an exchange: the connection goes back to the pool when it is
// clean, else it is closed.
func (pc *h1Conn) finish(keep bool) {
	// stop is false when the request was cancelled meanwhile: the deadline
	// it set makes the connection unusable.
	if pc.stop() && keep && pc.br.Buffered() == 0 {
		pc.client.put(pc)
		return
	}
	pc.close()
}

func (pc *h1Conn) close() { _ = pc.conn.Close() }

// h1Body is a response body on an h1Conn; the connection is released when
// the body reaches its end or is closed.
type h1Body struct {
	pc   *h1Conn
	rc   io.ReadCloser
	keep bool

	mu   sync.Mutex
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.done = true
		// io.EOF is the framed end; any other error leaves the
		// connection in an unknown state.
		b.pc.finish(b.keep && err == io.EOF)
	}
	return n, err
}

// Close before the end closes the connection: draining an unknown rest to
// save a connection is not worth holding the client's request.
func (b *h1Body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		b.pc.finish(false)
	}
	return nil
}

// rawConnOf is the descriptor access of a dialled connection (under the
// idle-timeout wrapper), or nil.
func rawConnOf(c net.Conn) syscall.RawConn {
	if ic, ok := c.(*idleConn); ok {
		c = ic.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
