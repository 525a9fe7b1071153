package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
)

// TestAccessLog checks the access line of each request: logger "access",
// level info, the fields an operator needs, the query only for a site that
// opts in, and never a cookie or credentials.
func TestAccessLog(t *testing.T) {
	b := echoBackend(t, "b")
	cfg := configs.HTTP{Sites: []configs.Site{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{b.URL}},
		{Hosts: []string{"q.example.com"}, Upstreams: []string{b.URL}, AccessLogQuery: true},
	}}
	p := startProxy(t, cfg)
	hdr := http.Header{"Cookie": {"ASP.NET_SessionId=cookie-secret"}, "Authorization": {"Basic YXV0aC1zZWNyZXQ="}}
	p.getEcho(t, "app.example.com", "/chart?mrn=123456", hdr)
	p.getEcho(t, "q.example.com", "/find?term=abc", hdr)

	lines := p.logs.FilterLoggerName("access").All()
	if len(lines) != 2 {
		t.Fatalf("%d access lines, want 2", len(lines))
	}
	for i, e := range lines {
		f := e.ContextMap()
		if e.Level.String() != "info" || e.Message != "request" {
			t.Errorf("line %d: %s %q, want info request", i, e.Level, e.Message)
		}
		for _, k := range []string{"site", "method", "path", "status", "bytes", "duration", "upstream", "tls_version", "remote"} {
			if _, ok := f[k]; !ok {
				t.Errorf("line %d lacks %s: %v", i, k, f)
			}
		}
		if f["status"] != int64(200) || f["upstream"] != b.URL {
			t.Errorf("line %d: status %v upstream %v", i, f["status"], f["upstream"])
		}
	}
	if f := lines[0].ContextMap(); f["path"] != "/chart" || f["query"] != nil {
		t.Errorf("site without access_log_query: path %v query %v; want /chart and no query", f["path"], f["query"])
	}
	if f := lines[1].ContextMap(); f["query"] != "term=abc" {
		t.Errorf("site with access_log_query: query %v, want term=abc", f["query"])
	}
	for _, e := range p.logs.All() {
		s := e.Message + " " + strings.Join(fieldStrings(e.ContextMap()), " ")
		for _, leak := range []string{"123456", "cookie-secret", "YXV0aC1zZWNyZXQ="} {
			if strings.Contains(s, leak) {
				t.Errorf("a log entry carries %q: %s", leak, s)
			}
		}
	}
}

func fieldStrings(m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, strings.TrimSpace(strings.ReplaceAll(toString(v), "\n", " ")))
	}
	return out
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestMetricsCounted checks requests, handshakes (ok and failed) and the
// live gauges of a Server with Metrics.
func TestMetricsCounted(t *testing.T) {
	b := echoBackend(t, "b")
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	cfg := oneSite(b.URL)
	cfg.Sites[0].PassiveHealth = configs.PassiveHealth{MaxFails: 1, FailTimeout: time.Minute}
	p := startProxy(t, cfg, WithMetrics(m))
	for range 3 {
		p.getEcho(t, "app.example.com", "/", nil)
	}
	p.client.CloseIdleConnections()
	// A plain-HTTP client on the HTTPS port: a failed handshake.
	if c, err := net.DialTimeout("tcp", p.srv.HTTPSAddr().String(), 5*time.Second); err == nil {
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 256))
		c.Close()
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("app.example.com", "GET", "2xx")); got != 3 {
		t.Errorf("requests{2xx} = %v, want 3", got)
	}
	testkit.EventuallyTrue(t, "the handshakes counted", func() bool {
		return testutil.ToFloat64(m.handshakes.WithLabelValues("https", "1.3", "ok")) >= 1 &&
			testutil.ToFloat64(m.handshakes.WithLabelValues("https", "none", "not_tls")) == 1
	})
	if n, err := testutil.GatherAndCount(reg, "gateway_http_upstream_healthy"); err != nil || n != 1 {
		t.Errorf("upstream_healthy: %d series, %v", n, err)
	}

	// The upstream goes away: its health gauge drops, the site is unhealthy.
	b.Close()
	resp, _ := p.get(t, "app.example.com", "/", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d with the upstream gone, want 502", resp.StatusCode)
	}
	if got := p.srv.UnhealthySites(); len(got) != 1 || got[0] != "app.example.com" {
		t.Errorf("UnhealthySites = %v", got)
	}
	if got := testutil.ToFloat64(m.upErrors.WithLabelValues("app.example.com", b.URL, string(kindRefused))); got != 1 {
		t.Errorf("upstream_errors{connection_refused} = %v, want 1", got)
	}
}

func TestLabels(t *testing.T) {
	for m, want := range map[string]string{"GET": "GET", "PROPFIND": "OTHER", "get": "OTHER"} {
		if got := methodLabel(m); got != want {
			t.Errorf("methodLabel(%q) = %q, want %q", m, got, want)
		}
	}
	for s, want := range map[int]string{0: "none", 101: "1xx", 200: "2xx", 499: "4xx", 503: "5xx"} {
		if got := codeClass(s); got != want {
			t.Errorf("codeClass(%d) = %q, want %q", s, got, want)
		}
	}
}
