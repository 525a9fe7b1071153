package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gateway-project/gateway/configs"
)

// front is the HTTPS handler: it counts the request for the drain, selects
// the site from the configuration in force, enforces client certificates and
// the body limit, chooses the upstream, proxies the request, and then logs it
// (access log) and counts it (metrics).
type front struct {
	srv *Server
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv := f.srv
	srv.inflight.add()
	defer srv.inflight.done()

	start := time.Now()
	gen := srv.gen.Load()
	s := gen.table.match(r.Host)
	// One allocation carries the request's state, its recorder and (as
	// the context the proxy hooks read it from) the state's context key.
	rs := &requestState{Context: r.Context(), site: s, h2: r.ProtoMajor == 2}
	rec := &rs.rec
	rec.ResponseWriter = w
	var body *countingBody
	// Deferred so that aborted requests (ReverseProxy panics with
	// http.ErrAbortHandler when a body copy fails) are logged too.
	defer func() { srv.logRequest(r, s, rs, rec, body, start) }()

	if s.clientAuth != tls.NoClientCert && !f.clientAuthOK(rec, r, s, gen.table) {
		return
	}
	if r.ProtoMajor == 2 && s.http2 == configs.HTTP2Off {
		// An HTTP/2 connection made for another name (http2.go): the
		// browser retries on a connection of its own, over HTTP/1.1.
		writeError(rec, s, http.StatusMisdirectedRequest, bodyMisdirected)
		return
	}
	if s.maxBody > 0 && r.ContentLength > s.maxBody {
		// Answered before reading the body; net/http then closes the
		// connection rather than read what the client still sends.
		writeError(rec, s, http.StatusRequestEntityTooLarge, bodyTooLarge)
		return
	}
	guardFraming(w, r) // clientbody.go: RFC 9112 framing, 400 for bad bodies
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
		if s.maxBody > 0 {
			// A chunked body that grows too big fails the upstream request
			// with *http.MaxBytesError, answered 413 by the error handler.
			r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		}
	}
	cc := connFrom(r.Context())
	rs.conn = cc
	up, sticky := s.choose(r, cc)
	up.inflight.Add(1)
	rs.upstream, rs.sticky = up, sticky // from here on the request is proxied
	defer func() { rs.upstream.inflight.Add(-1) }()
	r = r.WithContext(rs)
	rs.in = r
	s.proxy.ServeHTTP(rec, r)
}

// recorder notes the status and size of a response for the request log.
// Unwrap lets http.ResponseController, which ReverseProxy uses to flush
// streams and hijack upgraded connections, reach the real writer.
type recorder struct {
	http.ResponseWriter
	status int // 0: nothing written (an aborted or hijacked request)
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 { // 1xx are interim
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Flush serves code that asserts http.Flusher instead of using
// http.ResponseController.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// tracker counts in-flight requests so that shutdown can wait for them and
// report how many it cut. http.Server.Shutdown alone is not enough: it does
// not wait for hijacked (upgraded, e.g. WebSocket) connections. Counting is
// one atomic add per request; only the drain, which is rare, polls.
type tracker struct {
	n atomic.Int64
}

func newTracker() *tracker { return &tracker{} }

func (t *tracker) add()  { t.n.Add(1) }
func (t *tracker) done() { t.n.Add(-1) }

func (t *tracker) count() int { return int(t.n.Load()) }

// trackerPoll is how often wait looks at the count.
const trackerPoll = 10 * time.Millisecond

// wait returns nil once no request is in flight, or ctx's error.
func (t *tracker) wait(ctx context.Context) error {
	if t.n.Load() == 0 {
		return nil
	}
	tick := time.NewTicker(trackerPoll)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if t.n.Load() == 0 {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
