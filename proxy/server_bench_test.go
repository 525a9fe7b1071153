package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkProxyRequest sends small GET requests through a running Server
// (TLS on 127.0.0.1, HTTP/1.1 keep-alive, 64-byte responses) from parallel
// clients: the whole request path in one process, for -cpuprofile and
// -memprofile. The client and the upstream run in the same process, so
// allocations and time include theirs; compare runs, not absolute figures.
func BenchmarkProxyRequest(b *testing.B) {
	body := make([]byte, 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	cfg := oneSite(up.URL)
	cfg.Listen = "127.0.0.1:0"
	srv, err := New(cfg, serverTLS(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Error("Serve did not return")
		}
	})
	tlsCfg := clientTLS()
	tlsCfg.ServerName = "app.example.com"
	tlsCfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	url := "https://" + srv.HTTPSAddr().String() + "/"

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			req.Host = "app.example.com"
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %s", resp.Status)
				return
			}
		}
	})
}
