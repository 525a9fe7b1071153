package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Health has two sources, combined by upstream.healthy:
//
//   - passive (passive_health): every proxied request reports its outcome.
//     A connection failure, or a 502, 503 or 504 from the upstream (IIS
//     answers 503 while an application pool is stopped), is a failure; any
//     other answer is a success. After max_fails failures in a row the
//     upstream is put aside for fail_timeout; it comes back when that time
//     is over or at its first success (it still gets requests when every
//     upstream is down).
//   - active (health_check): GET path on each upstream every interval; the
//     upstream is down from a failed check until a passing one.

// passiveSuccess records an answer that shows u working.
func (s *site) passiveSuccess(u *upstream) {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
	if u.downUntil.Load() != 0 && u.downUntil.Swap(0) != 0 {
		s.log.Info("upstream healthy", zap.String("site", s.name), zap.String("upstream", u.raw), zap.String("check", "passive"))
	}
}

// passiveFailure records a failure of u; reason is the error kind or status.
func (s *site) passiveFailure(u *upstream, reason string) {
	if s.passive.MaxFails <= 0 {
		return
	}
	if u.fails.Add(1) < int32(s.passive.MaxFails) {
		return
	}
	u.fails.Store(0)
	now := time.Now()
	if prev := u.downUntil.Swap(now.Add(s.passive.FailTimeout).UnixNano()); prev <= now.UnixNano() {
		s.log.Warn("upstream unhealthy",
			zap.String("site", s.name), zap.String("upstream", u.raw), zap.String("check", "passive"),
			zap.String("reason", reason), zap.Int("max_fails", s.passive.MaxFails),
			zap.Duration("fail_timeout", s.passive.FailTimeout))
	}
}

// observe records the outcome of a round trip to u for passive health.
func (s *site) observe(u *upstream, res *http.Response, err error) {
	switch {
	case err != nil:
		kind := classify(err)
		s.metrics.upstreamError(s.name, u.raw, string(kind))
		if kind != kindClientCanceled && kind != kindTooLarge && kind != kindBadBody {
			s.passiveFailure(u, string(kind))
		}
	case res.StatusCode == http.StatusBadGateway, res.StatusCode == http.StatusServiceUnavailable,
		res.StatusCode == http.StatusGatewayTimeout:
		s.passiveFailure(u, res.Status)
	default:
		s.passiveSuccess(u)
	}
}

// startChecks runs the site's health checks under ctx until stopChecks
// (a reload removed the site) or ctx ends. The goroutines are counted in wg.
func (s *site) startChecks(ctx context.Context, wg *sync.WaitGroup) {
	if s.health.Path == "" || s.health.Interval <= 0 || s.checkCancel != nil {
		return
	}
	ctx, s.checkCancel = context.WithCancel(ctx)
	s.runHealthChecks(ctx, wg)
}

// stopChecks ends the health checks startChecks started.
func (s *site) stopChecks() {
	if s.checkCancel != nil {
		s.checkCancel()
	}
}

// runHealthChecks checks every upstream each health_check.interval until
// ctx ends, when health_check.path is set. The goroutines are counted in wg.
func (s *site) runHealthChecks(ctx context.Context, wg *sync.WaitGroup) {
	if s.health.Path == "" || s.health.Interval <= 0 {
		return
	}
	for _, u := range s.upstreams {
		wg.Go(func() { s.healthLoop(ctx, u) })
	}
}

func (s *site) healthLoop(ctx context.Context, u *upstream) {
	t := time.NewTicker(s.health.Interval)
	defer t.Stop()
	for {
		err := s.checkOnce(ctx, u)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !u.activeDown.Swap(true) {
				s.log.Warn("upstream unhealthy",
					zap.String("site", s.name), zap.String("upstream", u.raw), zap.String("check", "active"),
					zap.String("reason", safeError(err)))
			}
		} else if u.activeDown.Swap(false) {
			s.log.Info("upstream healthy", zap.String("site", s.name), zap.String("upstream", u.raw), zap.String("check", "active"))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var errHealthStatus = errors.New("unexpected status")

// checkOnce sends one health check to u.
func (s *site) checkOnce(ctx context.Context, u *upstream) error {
	ctx, cancel := context.WithTimeout(ctx, s.health.Timeout)
	defer cancel()
	res, err := s.upstreamGet(ctx, u, s.health.Path, "gateway-health-check")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	if res.StatusCode != s.health.ExpectStatus {
		return fmt.Errorf("%w %d, want %d", errHealthStatus, res.StatusCode, s.health.ExpectStatus)
	}
	return nil
}

// upstreamGet sends the gateway's own GET for path (health checks, the
// HTTP/2 probe) to u through its pool, with the site's first host as Host
// when preserve_host is set. The caller closes the body.
func (s *site) upstreamGet(ctx context.Context, u *upstream, path, userAgent string) (*http.Response, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	target := *u.url
	target.Path, target.RawPath = joinPath(u.url.Path, ref.Path), ""
	target.RawQuery = ref.RawQuery
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, err
	}
	host := ""
	switch {
	case s.checkHost != "":
		req.Host, host = s.checkHost, canonicalHost(s.checkHost)
	case s.upstreamTLS.SNIFromHost:
		host = canonicalHost(firstPlainHost(s.hosts)) // the TLS name, not the Host header
	}
	req.Header.Set("User-Agent", userAgent)
	tr, err := u.pool.transport(host)
	if err != nil {
		return nil, err
	}
	return tr.RoundTrip(req)
}

// joinPath appends a path to an upstream URL's path prefix.
func joinPath(prefix, p string) string {
	switch {
	case prefix == "" || prefix == "/":
		return p
	case prefix[len(prefix)-1] == '/' && p != "" && p[0] == '/':
		return prefix + p[1:]
	default:
		return prefix + p
	}
}
