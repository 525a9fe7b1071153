package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// healthy reports whether u may be picked at now (unix nanoseconds): the
// active check has not failed it and passive health has not put it aside.
func (u *upstream) healthy(now int64) bool {
	return !u.activeDown.Load() && u.downUntil.Load() <= now
}

// choose selects the upstream for a request: the client connection's pin
// (Windows authentication), else the upstream its sticky cookie names, else
// one picked by the load-balancing policy. An upstream that is not healthy
// loses its pinned and sticky clients. sticky is the cookie value received,
// so the response can tell the client when its upstream changed.
func (s *site) choose(r *http.Request, cc *clientConn) (u *upstream, sticky string) {
	now := time.Now().UnixNano()
	if s.sticky != "" {
		sticky = cookieValue(r.Header, s.sticky)
	}
	if s.windowsAuth && cc != nil {
		if p := cc.pinFor(s); p != nil {
			if p.up.healthy(now) || len(s.upstreams) == 1 {
				return p.up, sticky
			}
			cc.unpin(p)
		}
	}
	if sticky != "" {
		for _, u := range s.upstreams {
			if u.id == sticky && (u.healthy(now) || len(s.upstreams) == 1) {
				return u, sticky
			}
		}
	}
	return s.pick(), sticky
}

// pick returns an upstream by the site's policy among the healthy ones, or
// in turn among all of them when none is healthy (trying beats certain
// failure).
func (s *site) pick() *upstream { return s.pickExcept(nil) }

// pickExcept is pick skipping the upstreams already tried for this request.
// It returns nil when every healthy upstream has been tried (or, when none is
// healthy, every upstream).
//
// round_robin takes the healthy upstreams in turn; least_conn takes the one
// with the fewest requests in flight through this gateway, ties going in
// turn.
func (s *site) pickExcept(tried []*upstream) *upstream {
	n := uint64(len(s.upstreams))
	start := s.next.Add(1) - 1
	if n == 1 {
		if len(tried) == 0 {
			return s.upstreams[0]
		}
		return nil
	}
	now := time.Now().UnixNano()
	var best *upstream
	anyHealthy := false
	for i := range n {
		u := s.upstreams[(start+i)%n]
		if !u.healthy(now) {
			continue
		}
		anyHealthy = true
		if slices.Contains(tried, u) {
			continue
		}
		if !s.leastConn {
			if i > 0 {
				// Move the cursor past the skipped ones, so that the
				// next upstream does not get their share too.
				s.next.Add(i)
			}
			return u
		}
		if best == nil || u.inflight.Load() < best.inflight.Load() {
			best = u
		}
	}
	if best != nil || anyHealthy {
		return best
	}
	for i := range n {
		if u := s.upstreams[(start+i)%n]; !slices.Contains(tried, u) {
			return u
		}
	}
	return nil
}

// cookieValue returns the value of the cookie named name in the request's
// Cookie headers, or "", without allocating.
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if k, v, ok := strings.Cut(part, "="); ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// removeCookie drops the cookie named name from the Cookie headers: the
// gateway's affinity cookie means nothing to the application.
func removeCookie(h http.Header, name string) {
	lines := h["Cookie"]
	found := false
	for _, line := range lines {
		if strings.Contains(line, name) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			if k, _, _ := strings.Cut(part, "="); part != "" && k != name {
				kept = append(kept, part)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

// stickyCookie is the Set-Cookie value that sends a client to u. The
// cookie is only an affinity hint, so SameSite=None: a cross-site POST back
// to the application (single sign-on) must land on the same server.
func (s *site) stickyCookie(u *upstream) string {
	return s.sticky + "=" + u.id + "; Path=/; Secure; HttpOnly; SameSite=None"
}

// stickyID names an upstream in cookies: 16 characters of an HMAC of the
// site and the upstream URL, which identifies the upstream without
// revealing its address.
func stickyID(key []byte, siteName, upstreamURL string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(siteName))
	m.Write([]byte{0})
	m.Write([]byte(upstreamURL))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

// stickyKeySize is the size of the HMAC key of sticky cookies.
const stickyKeySize = 32

// loadStickyKey reads the key of sticky cookies from path, creating it
// (mode 0600) when missing, so that cookies stay valid across restarts. An
// empty path gives a random key that lives as long as the process.
func loadStickyKey(path string) ([]byte, error) {
	key := make([]byte, stickyKeySize)
	if path == "" {
		_, err := rand.Read(key)
		return key, err
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil && len(data) == stickyKeySize:
		return data, nil
	case err == nil:
		return nil, fmt.Errorf("sticky key %s: %d bytes, want %d; delete it to make a new one", path, len(data), stickyKeySize)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading sticky key: %w", err)
	}
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Written aside, then linked into place: another gateway sharing the
	// storage never reads a half-written key, and the first one wins.
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating sticky key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".sticky-key-*")
	if err != nil {
		return nil, fmt.Errorf("creating sticky key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("writing sticky key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing sticky key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadStickyKey(path)
		}
		return nil, fmt.Errorf("creating sticky key: %w", err)
	}
	return key, nil
}
