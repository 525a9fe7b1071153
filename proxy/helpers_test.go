package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

// testPKI is a self-signed certificate for the names the tests use, and a
// pool that trusts it.
var testPKI = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	c, err := testpki.SelfSigned(testpki.Options{CommonName: "gateway proxy test"},
		"localhost", "app.example.com", "*.example.com", "127.0.0.1")
	if err != nil {
		panic(err)
	}
	return c.TLS(), c.Pool()
})

// serverTLS is what tlsmgr would hand to New.
func serverTLS() *tls.Config {
	cert, _ := testPKI()
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
	}
}

func clientTLS() *tls.Config {
	_, pool := testPKI()
	return &tls.Config{RootCAs: pool}
}

// newLogger logs to the test and records every entry, debug included.
func newLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := zaptest.NewLogger(t, zaptest.Level(zapcore.DebugLevel)).
		WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) }))
	return l, logs
}

// echo is what echoBackend reports about the request it received.
type echo struct {
	Backend string
	Host    string
	Proto   string
	Path    string
	Query   string
	Header  http.Header
}

// echoBackend is an upstream that answers with a JSON echo of the request.
func echoBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Backend: name, Host: r.Host, Proto: r.Proto, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header,
		})
	}))
	t.Cleanup(b.Close)
	return b
}

// backend is an upstream with a custom handler.
func backend(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(h)
	t.Cleanup(b.Close)
	return b
}

// deadUpstream returns the URL of a loopback port nothing listens on.
func deadUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// testProxy is a running Server with a client that trusts it.
type testProxy struct {
	srv    *Server
	logs   *observer.ObservedLogs
	base   string // https://127.0.0.1:port
	client *http.Client
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// startProxy runs a Server for cfg on 127.0.0.1 ports chosen by the kernel
// and stops it when the test ends.
func startProxy(t *testing.T, cfg configs.HTTP, opts ...Option) *testProxy {
	t.Helper()
	return startProxyHook(t, cfg, nil, opts...)
}

func startProxyHook(t *testing.T, cfg configs.HTTP, onShutdown func(), opts ...Option) *testProxy {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	logger, logs := newLogger(t)
	srv, err := New(cfg, serverTLS(), logger, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.onShutdown = onShutdown
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{
		srv:    srv,
		logs:   logs,
		base:   "https://" + srv.HTTPSAddr().String(),
		cancel: cancel,
		done:   make(chan error, 1),
		client: &http.Client{
			Transport: &http.Transport{TLSClientConfig: clientTLS()},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	go func() { p.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		if err := p.stop(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// stop cancels Serve and returns its result.
func (p *testProxy) stop(t *testing.T) error {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err // let a second stop see it too
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return 30s after its context ended")
		return nil
	}
}

// get sends a GET for path with the given Host header (none: the URL's).
func (p *testProxy) get(t *testing.T, host, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if host != "" {
		req.Host = host
	}
	return do(t, p.client, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(body)
}

// getEcho is get for an echoBackend upstream.
func (p *testProxy) getEcho(t *testing.T, host, path string, hdr http.Header) echo {
	t.Helper()
	resp, body := p.get(t, host, path, hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	var e echo
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&e); err != nil {
		t.Fatalf("decoding echo %q: %v", body, err)
	}
	return e
}

// oneSite is a configuration with a single site in front of upstreams.
func oneSite(upstreams ...string) configs.HTTP {
	return configs.HTTP{Sites: []configs.Site{{Hosts: []string{"app.example.com"}, Upstreams: upstreams}}}
}
