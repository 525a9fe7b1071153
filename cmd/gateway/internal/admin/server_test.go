package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gateway-project/gateway/proxy"
	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/tlsmgr"
)

func get(t *testing.T, h http.Handler, method, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body), rec.Header()
}

func TestEndpoints(t *testing.T) {
	var problems []string
	reg, err := NewRegistry(NewProcess("v1", "abc", time.Unix(1700000000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	s := New("127.0.0.1:0", Options{
		Gatherer: reg,
		Ready:    func() []string { return problems },
		Certs:    func() any { return map[string]any{"certificates": []string{"x"}} },
	})
	h := s.Handler()
	tests := []struct {
		name     string
		method   string
		path     string
		problems []string
		code     int
		body     string // contained in the body
	}{
		{"healthz", "GET", "/healthz", nil, 200, "ok"},
		{"healthz head", "HEAD", "/healthz", nil, 200, ""},
		{"ready", "GET", "/readyz", nil, 200, "ready"},
		{"not ready", "GET", "/readyz", []string{"draining", "site a: no healthy upstream"}, 503,
			"not ready: draining\nnot ready: site a: no healthy upstream\n"},
		{"metrics", "GET", "/metrics", nil, 200, `gateway_build_info{commit="abc"`},
		{"certs", "GET", "/certs", nil, 200, `"certificates"`},
		{"post refused", "POST", "/readyz", nil, 405, ""},
		{"unknown path", "GET", "/debug/pprof/", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			problems = tc.problems
			code, body, hdr := get(t, h, tc.method, tc.path)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.body)
			}
			if code == 200 && tc.path != "/metrics" && hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: Cache-Control %q, want no-store", tc.path, hdr.Get("Cache-Control"))
			}
		})
	}
	var v map[string]any
	if _, body, _ := get(t, h, "GET", "/certs"); json.Unmarshal([]byte(body), &v) != nil {
		t.Errorf("/certs is not JSON: %q", body)
	}
}

// TestRegistryAllCollectors registers every subsystem's collector in one
// private registry, as the gateway does: their families must agree (the TLS
// handshake counter is shared by proxy and sqltunnel).
func TestRegistryAllCollectors(t *testing.T) {
	p := NewProcess("v", "c", time.Now())
	p.SetReady(func() []string { return []string{"starting"} })
	reg, err := NewRegistry(p, proxy.NewMetrics(), sqltunnel.NewMetrics(), tlsmgr.NewMetrics())
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if got := testutil.ToFloat64(p.lastResult); got != 1 {
		t.Errorf("last reload successful = %v before any reload", got)
	}
	p.ReloadFailed()
	p.ReloadSucceeded(time.Unix(1800000000, 0))
	want := `
# HELP gateway_config_reloads_total Configuration reloads (SIGHUP) by result: success, or failure (the running configuration was kept).
# TYPE gateway_config_reloads_total counter
gateway_config_reloads_total{result="failure"} 1
gateway_config_reloads_total{result="success"} 1
# HELP gateway_ready 1 when the gateway is ready to take traffic (/readyz answers 200).
# TYPE gateway_ready gauge
gateway_ready 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gateway_config_reloads_total", "gateway_ready"); err != nil {
		t.Error(err)
	}
	// A second registry with the same collectors is independent: nothing global.
	if _, err := NewRegistry(NewProcess("v", "c", time.Now())); err != nil {
		t.Errorf("a second registry: %v", err)
	}
}

// TestServe binds a loopback port and stops with its context.
func TestServe(t *testing.T) {
	s := New("127.0.0.1:0", Options{})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	if code, _, _ := get(t, s.Handler(), "GET", "/metrics"); code != 404 {
		t.Errorf("/metrics without a gatherer: %d, want 404", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
