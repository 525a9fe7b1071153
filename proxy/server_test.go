package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
)

func TestGracefulShutdown(t *testing.T) {
	tests := []struct {
		name     string
		drain    time.Duration
		release  bool // let the backend finish during the drain
		wantCut  bool
		wantBody string
	}{
		{name: "in-flight request completes", drain: time.Minute, release: true, wantBody: "done"},
		{name: "in-flight request cut after the drain timeout", drain: 100 * time.Millisecond, wantCut: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
				close(started)
				select {
				case <-release:
					_, _ = io.WriteString(w, "done")
				case <-r.Context().Done():
				}
			})
			t.Cleanup(func() {
				if !tc.release {
					close(release)
				}
			})
			draining := make(chan struct{})
			p := startProxyHook(t, oneSite(slow.URL), func() { close(draining) }, WithDrainTimeout(tc.drain))

			type result struct {
				status int
				body   string
				err    error
			}
			resc := make(chan result, 1)
			go func() {
				resp, err := p.client.Get(p.base + "/slow")
				if err != nil {
					resc <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				resc <- result{resp.StatusCode, string(b), err}
			}()
			<-started
			p.cancel()
			<-draining

			if tc.release {
				select {
				case err := <-p.done:
					t.Fatalf("Serve returned (%v) while a request was in flight", err)
				default:
				}
				close(release)
			}
			if err := p.stop(t); err != nil {
				t.Errorf("Serve returned %v, want nil", err)
			}
			res := <-resc
			if tc.wantCut {
				if res.err == nil && res.status == http.StatusOK {
					t.Errorf("cut request got 200 %q, want a broken connection", res.body)
				}
			} else if res.err != nil || res.status != http.StatusOK || res.body != tc.wantBody {
				t.Errorf("got %d %q %v, want 200 %q", res.status, res.body, res.err, tc.wantBody)
			}

			cut := p.logs.FilterMessage("drain timeout exceeded, closing connections").All()
			switch {
			case tc.wantCut && (len(cut) != 1 || cut[0].ContextMap()["requests_cut"] != int64(1)):
				t.Errorf("log %v, want one entry with requests_cut=1", cut)
			case !tc.wantCut && len(cut) != 0:
				t.Errorf("unexpected log %v", cut)
			}
		})
	}
}

func TestShutdownWithoutRequests(t *testing.T) {
	cfg := oneSite("http://127.0.0.1:1")
	cfg.RedirectListen = "127.0.0.1:0"
	p := startProxy(t, cfg)
	start := time.Now()
	if err := p.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle shutdown took %s", d)
	}
	if p.logs.FilterMessage("shut down").Len() != 1 {
		t.Error("no 'shut down' log entry")
	}
}

func TestNewRejects(t *testing.T) {
	good := oneSite("http://127.0.0.1:1")
	good.Listen = "127.0.0.1:0"
	noSites := good
	noSites.Sites = nil
	badUpstream := oneSite("10.0.0.5:80")
	badUpstream.Listen = "127.0.0.1:0"
	tests := []struct {
		name string
		cfg  configs.HTTP
		tls  *tls.Config
		is   error
	}{
		{"disabled", configs.HTTP{}, serverTLS(), ErrDisabled},
		{"nil TLS config", good, nil, nil},
		{"TLS config without certificates", good, &tls.Config{}, nil},
		{"no sites", noSites, serverTLS(), nil},
		{"upstream without scheme", badUpstream, serverTLS(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, tc.tls, zaptest.NewLogger(t))
			if err == nil || s != nil {
				t.Fatalf("New = %v, %v; want an error", s, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
		})
	}
}

func TestServeListensWhenNeeded(t *testing.T) {
	cfg := oneSite("http://127.0.0.1:1")
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, serverTLS(), nil) // nil logger: discard
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Serve must still listen, then shut down at once
	if err := s.Serve(ctx); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if s.HTTPSAddr() == nil {
		t.Error("HTTPSAddr is nil after Serve")
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("second Serve succeeded, want an error")
	}
	if err := s.Listen(); err == nil {
		t.Error("Listen after Serve succeeded, want an error")
	}
}

func TestListenErrors(t *testing.T) {
	cfg := oneSite("http://127.0.0.1:1")
	cfg.Listen = "127.0.0.1:0"
	first := startProxy(t, cfg)
	taken := first.srv.HTTPSAddr().String()

	cfg.Listen = taken
	s, err := New(cfg, serverTLS(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		t.Error("Listen on a taken port succeeded")
	}

	cfg.Listen, cfg.RedirectListen = "127.0.0.1:0", taken
	s, err = New(cfg, serverTLS(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		t.Error("Listen with a taken redirect port succeeded")
	}
	if s.HTTPSAddr() != nil {
		t.Error("HTTPS listener left open after the redirect listener failed")
	}
}

func TestTLSConfigNotModified(t *testing.T) {
	conf := serverTLS()
	conf.NextProtos = []string{"acme-tls/1", "h2", "http/1.1"}
	b := echoBackend(t, "b")
	cfg := oneSite(b.URL)
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, conf, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Serve(ctx) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(), ForceAttemptHTTP2: true}}
	resp, _ := do(t, client, mustRequest(t, "https://"+s.HTTPSAddr().String()+"/"))
	client.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("got %s, want HTTP/2", resp.Proto)
	}
	if got := conf.NextProtos; len(got) != 3 || got[0] != "acme-tls/1" || got[1] != "h2" || got[2] != "http/1.1" {
		t.Errorf("caller's NextProtos changed to %q", got)
	}
}

func TestShutdownCutsUpgradedConnections(t *testing.T) {
	// The backend echoes lines until its connection closes.
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString(line)
			_ = brw.Flush()
		}
	})
	p := startProxy(t, oneSite(up.URL), WithDrainTimeout(50*time.Millisecond))

	cfg := clientTLS()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", p.srv.HTTPSAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	_, _ = io.WriteString(conn, "ping\n") // after the 101, as a WebSocket client does
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}

	// http.Server.Shutdown ignores hijacked connections; Serve must still
	// wait for this one during the drain, then cut it.
	if err := p.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if rest, err := io.ReadAll(br); err == nil && len(rest) > 0 {
		t.Errorf("read %q after shutdown, want the connection closed", rest)
	}
	cut := p.logs.FilterMessage("drain timeout exceeded, closing connections").All()
	if len(cut) != 1 || cut[0].ContextMap()["requests_cut"] != int64(1) {
		t.Errorf("log %v, want requests_cut=1", cut)
	}
	if p.logs.FilterMessage("requests still running after close").Len() != 0 {
		t.Error("the upgraded connection outlived the close")
	}
}
