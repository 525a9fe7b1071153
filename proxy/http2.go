package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// Whether a site's names are offered HTTP/2 in ALPN (http.sites[].http2):
//
//   - auto: HTTP/2 until the site is found to use Windows authentication,
//     then HTTP/1.1 only (winauth.go explains why). It is found three ways:
//     a probe, GET / to an upstream when the Server starts serving and
//     after each reload, answered 401 with an NTLM or Negotiate challenge;
//     a challenge to a client's HTTP/2 request; NTLM or Negotiate
//     credentials in one. The names found are kept in an HTTP1OnlyStore,
//     so that after a restart even the first client is offered HTTP/1.1
//     without a probe having to succeed. Only sites with windows_auth are
//     probed or moved; the others always get HTTP/2.
//   - on: HTTP/2 always. A challenge over HTTP/2 reaches the client as
//     the upstream sent it, without GOAWAY, and credentials over HTTP/2
//     still never enter the pool (winauth.go). A client that moves to
//     HTTP/1.1 by itself on such a challenge (curl: "Forcing HTTP/1.1 for
//     NTLM") authenticates on its new connection; NTLM fails for one that
//     stays on HTTP/2; Kerberos works request by request.
//   - off: HTTP/1.1 only, from the first handshake. An HTTP/2 request for
//     the site on a connection made for another name (browsers reuse
//     connections across names one certificate covers) gets 421, so that
//     the browser reconnects with the site's name.
//
// A probe is not a health check: a probe that fails (upstream down, time
// out) leaves the site on HTTP/2 and the finding to traffic. A 401 at /
// is a strong sign (IIS with anonymous access off for the whole site); a
// site that challenges only below / is found by its first HTTP/2 client,
// which then gets the GOAWAY.

const (
	// probeTimeout bounds a site's probe, and how long TLS handshakes for
	// the site's names wait for its first probe (awaitProbe).
	probeTimeout = 5 * time.Second
	// probeBodyLimit is how much of a probe's answer is read, so that the
	// connection can go back to the pool.
	probeBodyLimit = 64 << 10
)

// fallsBack reports whether the site moves to HTTP/1.1 once it shows
// Windows authentication (http2: auto with windows_auth).
func (s *site) fallsBack() bool {
	return s.windowsAuth && s.http2 == configs.HTTP2Auto
}

// setHTTP2 applies the site's http2 mode once its TLS configurations are
// built; names holds the names found before (nil: none).
func (s *site) setHTTP2(names *http1Names) {
	s.http1 = names
	switch {
	case s.http2 == configs.HTTP2Off:
		s.h1Only.Store(true)
	case !s.fallsBack():
	case names != nil && names.has(s.hosts):
		s.h1Only.Store(true)
		s.log.Info("offering only http/1.1 for this site, as found before",
			zap.String("site", s.name))
	default:
		s.probed = make(chan struct{})
	}
}

// markHTTP1 stops offering h2 for the site's names and records them, once;
// it reports whether it did.
func (s *site) markHTTP1() bool {
	if !s.fallsBack() || s.tlsH1 == nil || s.h1Only.Swap(true) {
		return false
	}
	if s.http1 != nil {
		s.http1.add(s.hosts)
	}
	return true
}

// preferHTTP1 is markHTTP1 for a finding in traffic ("challenge" or
// "credentials"), logged.
func (s *site) preferHTTP1(reason string) {
	if s.markHTTP1() {
		s.log.Info("windows authentication over http/2: offering only http/1.1 for this site from now on",
			zap.String("site", s.name), zap.String("reason", reason))
	}
}

// awaitProbe holds a TLS handshake for one of the site's names while the
// site's first probe runs (up to probeTimeout, or until ctx ends), so that
// the first clients are offered what the probe finds.
func (s *site) awaitProbe(ctx context.Context) {
	ch := s.probed
	if ch == nil {
		return
	}
	select {
	case <-ch:
		return
	default:
	}
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// startProbe probes the site on its own goroutine, counted in wg, unless
// the site does not fall back or already offers only HTTP/1.1.
func (s *site) startProbe(ctx context.Context, wg *sync.WaitGroup) {
	if !s.fallsBack() {
		return
	}
	if s.h1Only.Load() {
		s.probeDone()
		return
	}
	wg.Go(func() {
		defer s.probeDone()
		s.probe(ctx)
	})
}

// probeDone releases the handshakes waiting in awaitProbe.
func (s *site) probeDone() {
	if s.probed != nil {
		s.probedOnce.Do(func() { close(s.probed) })
	}
}

var errNoUpstreamAnswered = errors.New("no upstream answered")

// probe sends GET / to the site's upstreams in turn until one answers,
// and moves the site to HTTP/1.1 if that answer is an NTLM or Negotiate
// challenge. The outcome is logged; nothing is fatal.
func (s *site) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var lastErr error = errNoUpstreamAnswered
	for _, u := range s.upstreams {
		res, err := s.upstreamGet(ctx, u, "/", "gateway-http2-probe")
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", u.raw, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, probeBodyLimit))
		_ = res.Body.Close()
		result := "http/2 kept: no windows authentication challenge at /"
		if res.StatusCode == http.StatusUnauthorized && challengesConnAuth(res.Header) {
			result = "offering only http/1.1: windows authentication challenge at /"
			s.markHTTP1()
		}
		s.log.Info("http2 probe", zap.String("site", s.name), zap.String("upstream", u.raw),
			zap.Int("status", res.StatusCode), zap.String("result", result))
		return
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // shutting down
	}
	s.log.Info("http2 probe", zap.String("site", s.name),
		zap.String("result", "failed: http/2 kept until a challenge is seen in traffic"),
		zap.String("error", safeError(lastErr)))
}
