package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
)

// waitLog waits until the observed logs hold at least n entries with msg
// (and the given upstream, when not empty). Log entries are the proxy's
// readiness signals for state changes; the loop only polls them.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg, upstream string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := 0
		for _, e := range logs.FilterMessage(msg).All() {
			if upstream == "" || e.ContextMap()["upstream"] == upstream {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d %q log entries for %q within 10s", n, msg, upstream)
		}
		<-time.After(5 * time.Millisecond)
	}
}

func TestLeastConn(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `{"Backend":"slow"}`)
	})
	fast := echoBackend(t, "fast")
	cfg := oneSite(slow.URL, fast.URL)
	cfg.Sites[0].LoadBalancing = configs.LoadBalancingLeastConn
	p := startProxy(t, cfg)

	held := make(chan string, 1)
	go func() {
		resp, body := p.get(t, "", "/", nil)
		_ = resp
		held <- body
	}()
	<-entered // the slow upstream now has one request in flight
	for i := range 4 {
		if got := p.getEcho(t, "", "/", nil).Backend; got != "fast" {
			t.Errorf("request %d went to %q while slow was busy, want fast", i, got)
		}
	}
	close(release)
	if body := <-held; !strings.Contains(body, "slow") {
		t.Errorf("held request answered %q", body)
	}
}

func TestStickySessions(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	cfg := oneSite(a.URL, b.URL)
	cfg.Sites[0].Sticky.Cookie = "GW_AFFINITY"
	p := startProxy(t, cfg, WithStickyKeyFile(filepath.Join(t.TempDir(), "sticky.key")))

	resp, body := p.get(t, "", "/", nil)
	first := backendOf(t, body)
	cookie := resp.Header.Get("Set-Cookie")
	name, rest, _ := strings.Cut(cookie, "=")
	id, attrs, _ := strings.Cut(rest, ";")
	if name != "GW_AFFINITY" || id == "" {
		t.Fatalf("Set-Cookie %q, want GW_AFFINITY=<id>", cookie)
	}
	for _, want := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=None"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("Set-Cookie %q lacks %s", cookie, want)
		}
	}
	for _, u := range []string{a.URL, b.URL} {
		if strings.Contains(cookie, strings.TrimPrefix(u, "http://")) {
			t.Errorf("cookie %q reveals the upstream address", cookie)
		}
	}
	hdr := http.Header{"Cookie": {"ASP.NET_SessionId=s1; GW_AFFINITY=" + id + "; theme=dark"}}
	for i := range 5 {
		resp, body := p.get(t, "", "/", hdr)
		e := decodeEcho(t, body)
		if e.Backend != first {
			t.Fatalf("request %d went to %s, want %s (sticky)", i, e.Backend, first)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("request %d: cookie set again although it was right", i)
		}
		if got := e.Header.Get("Cookie"); got != "ASP.NET_SessionId=s1; theme=dark" {
			t.Errorf("upstream saw Cookie %q, want the application's cookies only", got)
		}
	}

	// Its upstream goes down: the client is moved, and told.
	for _, u := range p.srv.currentSites()[0].upstreams {
		if u.id == id {
			u.activeDown.Store(true)
		}
	}
	resp, body = p.get(t, "", "/", hdr)
	if got := backendOf(t, body); got == first {
		t.Fatalf("sticky client still sent to %s while it is down", got)
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(c, "GW_AFFINITY=") || strings.Contains(c, id) {
		t.Errorf("after the move Set-Cookie %q, want a new affinity", c)
	}
	// An unknown or forged value is ignored.
	if resp, _ := p.get(t, "", "/", http.Header{"Cookie": {"GW_AFFINITY=10.0.0.5"}}); resp.StatusCode != http.StatusOK {
		t.Errorf("forged cookie: status %d", resp.StatusCode)
	}
}

func backendOf(t *testing.T, body string) string { return decodeEcho(t, body).Backend }

func decodeEcho(t *testing.T, body string) echo {
	t.Helper()
	var e echo
	if err := jsonUnmarshal(body, &e); err != nil {
		t.Fatalf("not an echo: %q: %v", body, err)
	}
	return e
}

func TestStickyKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "sticky.key")
	k1, err := loadStickyKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadStickyKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load %x, %v; want the same key %x", k2, err, k1)
	}
	if runtime.GOOS != "windows" {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, %v; want 0600", st.Mode(), err)
		}
	}
	if stickyID(k1, "app", "http://10.0.0.5") == stickyID(k1, "app", "http://10.0.0.6") {
		t.Error("two upstreams share an id")
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadStickyKey(path); err == nil {
		t.Error("a damaged key file was accepted")
	}
}

func TestCookieHelpers(t *testing.T) {
	h := http.Header{"Cookie": {"a=1; GW=x2", "b=2;GW=\"x3\""}}
	if got := cookieValue(h, "GW"); got != "x2" {
		t.Errorf("cookieValue = %q", got)
	}
	if got := cookieValue(h, "G"); got != "" {
		t.Errorf("cookieValue of a prefix = %q", got)
	}
	removeCookie(h, "GW")
	if got := h["Cookie"]; len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("removeCookie left %q", got)
	}
	h = http.Header{"Cookie": {"GW=1"}}
	removeCookie(h, "GW")
	if _, ok := h["Cookie"]; ok {
		t.Error("an empty Cookie header was left")
	}
	if n := testing.AllocsPerRun(50, func() { cookieValue(http.Header{"Cookie": {"a=1; GW=2"}}, "GW") }); n > 1 {
		t.Errorf("cookieValue allocates %v times", n)
	}
}

func TestRetryOnlyWhenConnectionFailed(t *testing.T) {
	t.Run("dial error retried with the body", func(t *testing.T) {
		var got string
		live := backend(t, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got = string(b)
		})
		p := startProxy(t, oneSite(deadUpstream(t), live.URL))
		req, _ := http.NewRequest(http.MethodPost, p.base+"/save", strings.NewReader("field=value"))
		if resp, _ := do(t, p.client, req); resp.StatusCode != http.StatusOK || got != "field=value" {
			t.Errorf("status %d, live upstream got body %q; want the POST retried whole", resp.StatusCode, got)
		}
	})
	t.Run("sent request never replayed", func(t *testing.T) {
		var liveHits atomic.Int32
		hangup := backend(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // the request arrived; no answer
			}
		})
		live := backend(t, func(w http.ResponseWriter, r *http.Request) { liveHits.Add(1) })
		p := startProxy(t, oneSite(hangup.URL, live.URL))
		req, _ := http.NewRequest(http.MethodPost, p.base+"/pay", strings.NewReader("amount=100"))
		if resp, _ := do(t, p.client, req); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", resp.StatusCode)
		}
		if n := liveHits.Load(); n != 0 {
			t.Errorf("the POST was replayed on another upstream %d time(s)", n)
		}
	})
}

func TestPassiveHealth(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	flaky := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"Backend":"flaky"}`)
	})
	ok := echoBackend(t, "ok")
	cfg := oneSite(flaky.URL, ok.URL)
	cfg.Sites[0].PassiveHealth = configs.PassiveHealth{MaxFails: 2, FailTimeout: time.Hour}
	p := startProxy(t, cfg)

	var codes []int
	for range 3 { // flaky (503), ok, flaky (503): now down
		resp, _ := p.get(t, "", "/", nil)
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 503 || codes[1] != 200 || codes[2] != 503 {
		t.Fatalf("statuses %v, want the application's 503s passed through", codes)
	}
	waitLog(t, p.logs, "upstream unhealthy", flaky.URL, 1)
	for i := range 4 {
		if got := p.getEcho(t, "", "/", nil).Backend; got != "ok" {
			t.Errorf("request %d went to %s while it is marked down", i, got)
		}
	}
	// When no upstream is healthy, requests still go out, and a success
	// brings an upstream back.
	sick.Store(false)
	p.srv.currentSites()[0].upstreams[1].activeDown.Store(true)
	for range 2 {
		p.get(t, "", "/", nil)
	}
	waitLog(t, p.logs, "upstream healthy", flaky.URL, 1)
}

func TestActiveHealthCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var checkHost atomic.Value
	a := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app/health" {
			checkHost.Store(r.Host)
			w.WriteHeader(int(status.Load()))
			return
		}
		_, _ = io.WriteString(w, `{"Backend":"a"}`)
	})
	b := echoBackend(t, "b")
	cfg := oneSite(a.URL+"/app", b.URL)
	cfg.Sites[0].PreserveHost = true
	cfg.Sites[0].HealthCheck = configs.HealthCheck{Path: "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, ExpectStatus: http.StatusOK}
	p := startProxy(t, cfg)
	aURL := a.URL + "/app"

	status.Store(http.StatusInternalServerError)
	waitLog(t, p.logs, "upstream unhealthy", aURL, 1)
	for i := range 4 {
		if got := p.getEcho(t, "", "/", nil).Backend; got != "b" {
			t.Errorf("request %d went to %s while its health check fails", i, got)
		}
	}
	if h, _ := checkHost.Load().(string); h != "app.example.com" {
		t.Errorf("health check sent Host %q, want the site's name (preserve_host)", h)
	}
	status.Store(http.StatusOK)
	waitLog(t, p.logs, "upstream healthy", aURL, 1)
	seen := map[string]bool{}
	for range 4 {
		resp, body := p.get(t, "", "/", nil)
		if resp.StatusCode == http.StatusOK {
			seen[backendOf(t, body)] = true
		}
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("after recovery requests went to %v, want both", seen)
	}
}

func TestMaxRequestBody(t *testing.T) {
	var mu sync.Mutex
	var got []int
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, int(n))
		mu.Unlock()
	})
	cfg := oneSite(b.URL)
	cfg.Sites[0].MaxRequestBody = 1024
	cfg.Sites[0].HSTSMaxAge = time.Hour
	p := startProxy(t, cfg)
	tests := []struct {
		name    string
		body    io.Reader
		length  int64 // -1: chunked
		status  int
		upBytes int // what the upstream got; -1: it saw nothing complete
	}{
		{"small", strings.NewReader(strings.Repeat("a", 512)), 512, http.StatusOK, 512},
		{"exactly the limit", strings.NewReader(strings.Repeat("a", 1024)), 1024, http.StatusOK, 1024},
		{"declared too large", strings.NewReader(strings.Repeat("a", 2048)), 2048, http.StatusRequestEntityTooLarge, -1},
		{"chunked too large", io.MultiReader(strings.NewReader(strings.Repeat("a", 2048))), -1, http.StatusRequestEntityTooLarge, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			req, _ := http.NewRequest(http.MethodPost, p.base+"/upload", tc.body)
			req.ContentLength = tc.length
			resp, body := do(t, p.client, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusRequestEntityTooLarge {
				if !strings.HasPrefix(body, "413 Request Entity Too Large") || resp.Header.Get("Strict-Transport-Security") == "" {
					t.Errorf("413 page %q, headers %v", body, resp.Header)
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != tc.upBytes {
				t.Errorf("upstream got %v bytes, want %d", got, tc.upBytes)
			}
		})
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
