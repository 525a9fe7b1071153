package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/configs"
)

func TestSiteSelection(t *testing.T) {
	a, b, c := echoBackend(t, "a"), echoBackend(t, "b"), echoBackend(t, "c")
	p := startProxy(t, configs.HTTP{Sites: []configs.Site{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{a.URL}},
		{Hosts: []string{"*.example.com"}, Upstreams: []string{b.URL}},
		{Hosts: []string{"other.test"}, Upstreams: []string{c.URL}},
	}})
	tests := []struct {
		host string // "" sends the URL's host, 127.0.0.1:port
		want string
	}{
		{"app.example.com", "a"},
		{"APP.EXAMPLE.COM:443", "a"},
		{"www.example.com", "b"},
		{"x.y.example.com", "a"},
		{"other.test", "c"},
		{"unknown.test", "a"},
		{"", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			if got := p.getEcho(t, tc.host, "/", nil).Backend; got != tc.want {
				t.Errorf("Host %q went to backend %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := echoBackend(t, "b")
	backendHost := strings.TrimPrefix(b.URL, "http://")
	spoofed := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.test"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Port":  {"80"},
		"X-Forwarded-Ssl":   {"off"},
		"Forwarded":         {"for=6.6.6.6;proto=http"},
		"X-Real-Ip":         {"6.6.6.6"},
		"X-Original-Url":    {"/admin"},
	}
	tests := []struct {
		name         string
		preserveHost bool
		wantHost     string
	}{
		{"preserve_host true sends the client's Host", true, "app.example.com"},
		{"preserve_host false sends the upstream's host", false, backendHost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneSite(b.URL)
			cfg.Sites[0].PreserveHost = tc.preserveHost
			p := startProxy(t, cfg)
			got := p.getEcho(t, "app.example.com", "/a/b?q=1", spoofed)

			if got.Host != tc.wantHost {
				t.Errorf("upstream saw Host %q, want %q", got.Host, tc.wantHost)
			}
			want := map[string]string{
				"X-Forwarded-For":   "127.0.0.1", // only the real client, nothing spoofed
				"X-Forwarded-Host":  "app.example.com",
				"X-Forwarded-Proto": "https",
				"X-Forwarded-Port":  "",
				"X-Forwarded-Ssl":   "",
				"Forwarded":         "",
				"X-Real-Ip":         "",
				"X-Original-Url":    "",
			}
			for k, v := range want {
				if vs := got.Header[k]; strings.Join(vs, ",") != v {
					t.Errorf("upstream saw %s %q, want %q", k, vs, v)
				}
			}
			if got.Path != "/a/b" || got.Query != "q=1" {
				t.Errorf("upstream saw %s?%s, want /a/b?q=1", got.Path, got.Query)
			}
			if got.Proto != "HTTP/1.1" {
				t.Errorf("upstream saw %s, want HTTP/1.1", got.Proto)
			}
		})
	}
}

func TestUpstreamPathPrefix(t *testing.T) {
	b := echoBackend(t, "b")
	p := startProxy(t, oneSite(b.URL+"/app"))
	if got := p.getEcho(t, "", "/page.aspx", nil).Path; got != "/app/page.aspx" {
		t.Errorf("upstream saw path %q, want /app/page.aspx", got)
	}
}

func TestHSTS(t *testing.T) {
	plain := echoBackend(t, "plain")
	ownHSTS := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=1; includeSubDomains")
	})
	dead := deadUpstream(t)
	tests := []struct {
		name     string
		upstream string
		maxAge   time.Duration
		want     []string
	}{
		{"enabled", plain.URL, 8760 * time.Hour, []string{"max-age=31536000"}},
		{"disabled", plain.URL, 0, nil},
		{"replaces the application's", ownHSTS.URL, time.Hour, []string{"max-age=3600"}},
		{"disabled leaves the application's", ownHSTS.URL, 0, []string{"max-age=1; includeSubDomains"}},
		{"on error pages", dead, time.Hour, []string{"max-age=3600"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneSite(tc.upstream)
			cfg.Sites[0].HSTSMaxAge = tc.maxAge
			p := startProxy(t, cfg)
			resp, _ := p.get(t, "", "/", nil)
			if got := resp.Header.Values("Strict-Transport-Security"); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	p := startProxy(t, oneSite(a.URL, b.URL))
	var got string
	for range 6 {
		got += p.getEcho(t, "", "/", nil).Backend
	}
	if got != "ababab" {
		t.Errorf("backends in order %q, want ababab", got)
	}
}

func TestDeadUpstream(t *testing.T) {
	dead := deadUpstream(t)
	p := startProxy(t, oneSite(dead))
	resp, body := p.get(t, "app.example.com", "/chart?patient=12345", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if !strings.HasPrefix(body, "502 Bad Gateway") {
		t.Errorf("body %q, want a short 502 page", body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}

	entries := p.logs.FilterMessage("upstream request failed").All()
	if len(entries) != 1 {
		t.Fatalf("%d 'upstream request failed' log entries, want 1", len(entries))
	}
	e := entries[0]
	if e.Level != zapcore.ErrorLevel {
		t.Errorf("logged at %s, want error", e.Level)
	}
	fields := e.ContextMap()
	for k, want := range map[string]any{
		"upstream":   dead,
		"site":       "app.example.com",
		"error_kind": "connection_refused",
		"path":       "/chart",
		"status":     int64(502),
	} {
		if fields[k] != want {
			t.Errorf("log field %s = %v, want %v", k, fields[k], want)
		}
	}
	if r, _ := fields["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("log field remote = %q, want the client address", r)
	}
	// The query string may identify a patient: it must not reach any log.
	for _, e := range p.logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, "12345") {
			t.Errorf("log entry contains the query string: %s", line)
		}
	}
}

func TestUpstreamIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before slow.Close
	p := startProxy(t, oneSite(slow.URL), WithUpstreamIdleTimeout(100*time.Millisecond))
	resp, body := p.get(t, "", "/", nil)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status %d, want 504", resp.StatusCode)
	}
	if !strings.HasPrefix(body, "504 Gateway Timeout") {
		t.Errorf("body %q, want a short 504 page", body)
	}
	entries := p.logs.FilterMessage("upstream request failed").All()
	if len(entries) != 1 || entries[0].ContextMap()["error_kind"] != "timeout" {
		t.Errorf("log entries %v, want one with error_kind timeout", entries)
	}
}

func TestDeadUpstreamIsSkipped(t *testing.T) {
	dead, live := deadUpstream(t), echoBackend(t, "live")
	cfg := oneSite(dead, live.URL)
	cfg.Sites[0].PassiveHealth = configs.PassiveHealth{MaxFails: 1, FailTimeout: time.Hour}
	p := startProxy(t, cfg)
	// The first request meets the dead upstream (round-robin starts
	// there), cannot connect, and is retried on the live one: no byte of
	// it was sent, so the retry is safe.
	for i := range 4 {
		if got := p.getEcho(t, "", "/", nil).Backend; got != "live" {
			t.Errorf("request %d went to %q, want live", i+1, got)
		}
	}
	if n := p.logs.FilterMessage("retrying on another upstream").Len(); n != 1 {
		t.Errorf("%d retries logged, want 1: once marked down, the dead upstream is not tried", n)
	}
	down := p.logs.FilterMessage("upstream unhealthy").All()
	if len(down) != 1 || down[0].ContextMap()["upstream"] != dead || down[0].ContextMap()["check"] != "passive" {
		t.Errorf("unhealthy log entries %v, want one for %s (passive)", down, dead)
	}
}

func TestStreamingResponse(t *testing.T) {
	gotFirst := make(chan struct{})
	sse := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "28") // would allow buffering, were it not SSE
		_, _ = io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-gotFirst:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two-three\n\n")
	})
	p := startProxy(t, oneSite(sse.URL))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The backend does not finish until we have the first event: reading
	// it proves the proxy forwards events as they come.
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v; want the first event before the stream ends", line, err)
	}
	close(gotFirst)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two-three\n\n" {
		t.Errorf("rest of stream %q, %v", rest, err)
	}
}

func TestHTTP2ToClients(t *testing.T) {
	b := echoBackend(t, "b")
	p := startProxy(t, oneSite(b.URL))
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(), ForceAttemptHTTP2: true}}
	t.Cleanup(h2.CloseIdleConnections)
	req, err := http.NewRequest(http.MethodGet, p.base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, h2, req)
	if resp.ProtoMajor != 2 {
		t.Errorf("client got %s, want HTTP/2", resp.Proto)
	}
	if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN did not negotiate h2: %+v", resp.TLS)
	}
}

func TestUpgradePassesThrough(t *testing.T) {
	// A minimal upgraded protocol: the backend echoes lines after 101.
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want Upgrade: websocket", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo " + line)
		_ = brw.Flush()
	})
	p := startProxy(t, oneSite(up.URL))

	cfg := clientTLS()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", p.srv.HTTPSAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if _, err := io.WriteString(conn, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Errorf("read %q, %v; want the backend's echo", line, err)
	}
}

func TestOversizedHeaders(t *testing.T) {
	b := echoBackend(t, "b")
	p := startProxy(t, oneSite(b.URL)) // DefaultMaxHeaderBytes, 64 KiB
	// net/http allows 4 KiB of slack over MaxHeaderBytes.
	resp, _ := p.get(t, "", "/", http.Header{"X-Big": {strings.Repeat("a", 72<<10)}})
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestOnlyWebSocketUpgradesAreForwarded(t *testing.T) {
	b := echoBackend(t, "b")
	p := startProxy(t, oneSite(b.URL))
	tests := []struct {
		upgrade string
		want    string // Upgrade header the upstream sees
	}{
		{"h2c", ""},
		{"TLS/1.2", ""},
		{"websocket", "websocket"},
		{"WebSocket", "WebSocket"},
	}
	for _, tc := range tests {
		t.Run(tc.upgrade, func(t *testing.T) {
			// The echo backend answers 200, so even the WebSocket request
			// completes as a plain one.
			got := p.getEcho(t, "", "/", http.Header{"Connection": {"Upgrade"}, "Upgrade": {tc.upgrade}})
			if up := got.Header.Get("Upgrade"); up != tc.want {
				t.Errorf("upstream saw Upgrade %q, want %q", up, tc.want)
			}
		})
	}
}

func TestHTTPSUpstream(t *testing.T) {
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	b.EnableHTTP2 = true // offered, and still not used: IIS gets HTTP/1.1
	b.StartTLS()
	t.Cleanup(b.Close)
	trusting := &tls.Config{RootCAs: b.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	tests := []struct {
		name     string
		opts     []Option
		status   int
		body     string
		wantKind string
	}{
		{"trusted", []Option{WithUpstreamTLSConfig(trusting)}, http.StatusOK, "HTTP/1.1", ""},
		{"untrusted", nil, http.StatusBadGateway, "", "tls"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, oneSite(b.URL), tc.opts...)
			resp, body := p.get(t, "", "/", nil)
			if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.wantKind != "" {
				e := p.logs.FilterMessage("upstream request failed").All()
				if len(e) != 1 || e[0].ContextMap()["error_kind"] != tc.wantKind {
					t.Errorf("log %v, want error_kind %s", e, tc.wantKind)
				}
			}
		})
	}
}
