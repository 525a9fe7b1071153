package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

var errNoState = errors.New("proxy: request without routing state")

// RoundTrip makes the site the Transport of its ReverseProxy: it sends the
// outbound request over the client connection's pinned upstream connection
// (winauth.go) or the chosen upstream's pool, retries on another upstream
// when a connection could not be made, and feeds passive health.
func (s *site) RoundTrip(req *http.Request) (*http.Response, error) {
	rs := stateFrom(req.Context())
	if rs == nil || rs.upstream == nil {
		return nil, errNoState
	}
	host := canonicalHost(hostOnly(rs.in.Host))
	if s.windowsAuth && rs.conn != nil {
		if res, handled, err := s.roundTripConnBound(req, rs, host); handled {
			return res, err
		}
	}
	res, err := s.roundTripPooled(req, rs, host)
	if err == nil && s.windowsAuth && res.StatusCode == http.StatusUnauthorized && challengesConnAuth(res.Header) {
		// The challenge itself is not bound to a connection; what the
		// client sends next is. Make sure it goes to a dedicated one.
		if rs.h2 {
			if s.fallsBack() { // http2: on passes the challenge as it is
				rs.goAway = true
				s.preferHTTP1("challenge")
			}
		} else if rs.conn != nil { // always set inside a Server
			if _, perr := rs.conn.pinTo(s, rs.upstream, host); perr != nil {
				s.log.Debug("pinning failed", zap.String("site", s.name), zap.Error(perr))
			}
		}
	}
	return res, err
}

// roundTripConnBound handles the requests that must not use the pool: those
// of a pinned client connection and those carrying NTLM or Negotiate
// credentials. handled is false for the others.
func (s *site) roundTripConnBound(req *http.Request, rs *requestState, host string) (res *http.Response, handled bool, err error) {
	p := rs.conn.pinFor(s)
	switch {
	case p != nil && p.up == rs.upstream:
	case !hasConnAuth(req.Header):
		return nil, false, nil
	case rs.h2:
		// Never into the pool, and never pinned: HTTP/2 streams of one
		// connection may belong to different users. Kerberos works
		// request by request; NTLM gets its GOAWAY and moves to HTTP/1.1
		// (unless http2: on).
		if s.fallsBack() {
			rs.goAway = true
			s.preferHTTP1("credentials")
		}
		tr, err := rs.upstream.pool.oneShotTransport(host)
		if err != nil {
			return nil, true, err
		}
		res, err = tr.RoundTrip(req)
		s.observe(rs.upstream, res, err)
		return res, true, err
	default:
		if p, err = rs.conn.pinTo(s, rs.upstream, host); err != nil {
			return nil, true, err
		}
		if p.up != rs.upstream { // pinned meanwhile: the pin wins
			rs.move(p.up)
			req = s.retarget(req, rs)
		}
	}
	rs.pinned = true
	res, err = p.tr.RoundTrip(req)
	s.observe(rs.upstream, res, err)
	return res, true, err
}

// roundTripPooled sends req through the pool of the chosen upstream. When
// the connection cannot be made (a dial error, so no byte of the request
// left) it tries each other upstream once, healthy ones first; a request
// whose bytes were sent is never replayed.
func (s *site) roundTripPooled(req *http.Request, rs *requestState, host string) (*http.Response, error) {
	var body *retryBody
	if req.Body != nil && req.Body != http.NoBody {
		body = newRetryBody(req.Body)
		req.Body = body
	}
	var tried []*upstream
	for {
		tr, err := rs.upstream.pool.roundTripper(host, req)
		var res *http.Response
		if err == nil {
			res, err = tr.RoundTrip(req)
		}
		s.observe(rs.upstream, res, err)
		if err == nil || !isDialError(err) || (body != nil && body.read.Load()) || req.Context().Err() != nil {
			body.release()
			return res, err
		}
		tried = append(tried, rs.upstream)
		next := s.pickExcept(tried)
		if next == nil {
			body.release()
			return nil, err
		}
		s.log.Debug("retrying on another upstream",
			zap.String("site", s.name), zap.String("failed", rs.upstream.raw), zap.String("upstream", next.raw),
			zap.String("error", safeError(err)))
		rs.move(next)
		req = s.retarget(req, rs)
	}
}

// retarget points the outbound request at rs.upstream, as Rewrite did for
// the first choice: the upstream URL's scheme, host and path prefix joined
// with the client's path.
func (s *site) retarget(out *http.Request, rs *requestState) *http.Request {
	u := *rs.in.URL
	out.URL = &u
	pr := &httputil.ProxyRequest{In: rs.in, Out: out}
	pr.SetURL(rs.upstream.url)
	if s.preserveHost {
		out.Host = rs.in.Host
	}
	return out
}

// move switches the request to another upstream, keeping the in-flight
// counts of least_conn right.
func (rs *requestState) move(u *upstream) {
	rs.upstream.inflight.Add(-1)
	u.inflight.Add(1)
	rs.upstream = u
}

// retryBody is a request body that remembers whether any byte was read and,
// until release, holds back the Transport's Close: a Transport closes the
// body even when it could not connect, and the retry needs it open.
type retryBody struct {
	io.ReadCloser
	read atomic.Bool

	mu      sync.Mutex
	holding bool // not released yet
	closed  bool // a Close was held back
}

func newRetryBody(rc io.ReadCloser) *retryBody {
	return &retryBody{ReadCloser: rc, holding: true}
}

func (b *retryBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 || (err != nil && err != io.EOF) {
		b.read.Store(true)
	}
	return n, err
}

func (b *retryBody) Close() error {
	b.mu.Lock()
	if b.holding {
		b.closed = true
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	return b.ReadCloser.Close()
}

// release ends the retries: a Close held back happens now, later ones go
// straight through. A nil body does nothing.
func (b *retryBody) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	closed := b.closed
	b.holding, b.closed = false, false
	b.mu.Unlock()
	if closed {
		_ = b.ReadCloser.Close()
	}
}
