package test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

// exportRoot runs `gateway ca root --config F --out FILE` and returns the PEM.
func exportRoot(t *testing.T, configFile string, env ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "root.pem")
	res := runCLI(t, env, "ca", "root", "--config", configFile, "--out", out)
	if res.code != 0 {
		t.Fatalf("gateway ca root: %s", res)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("gateway ca root wrote no file: %v\n%s", err, res)
	}
	return data
}

// TestHTTPSInternalCA serves two sites from the internal CA and checks what
// a client trusting only the exported root sees, and what the backend sees.
func TestHTTPSInternalCA(t *testing.T) {
	t.Parallel()
	backend := newEchoBackend(t, nil)
	backendHost := strings.TrimPrefix(backend.URL, "http://")
	cfg := newConfig(t, backend.URL, "app.test")
	cfg.HTTP.Sites[0].HSTSMaxAge = "1h"
	cfg.HTTP.Sites[0].PreserveHost = boolPtr(true)
	cfg.HTTP.Sites = append(cfg.HTTP.Sites, gwSite{
		Hosts:        []string{"rewrite.test"},
		Upstreams:    []string{backend.URL},
		HSTSMaxAge:   "0s",
		PreserveHost: boolPtr(false),
	})
	file := cfg.write(t)

	// Exported before the first start: the CA is created on demand.
	rootPEM := exportRoot(t, file)
	roots := testpki.MustPoolOf(t, rootPEM)

	g := startGateway(t, file)
	// Headers a client might send to pass itself off as another address or
	// as having used HTTPS; the gateway is the edge and must not relay them.
	spoofed := []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.test", "X-Forwarded-Proto", "http"}
	cases := []struct {
		name     string
		host     string
		headers  []string // extra request headers, name then value
		wantHost string   // the Host the backend sees
		wantHSTS string   // the Strict-Transport-Security directive; "" for no header
	}{
		{name: "preserve_host", host: "app.test", wantHost: "app.test", wantHSTS: "max-age=3600"},
		{name: "rewrite_host", host: "rewrite.test", wantHost: backendHost, wantHSTS: ""},
		{name: "spoofed_forwarded_headers", host: "app.test", headers: spoofed, wantHost: "app.test", wantHSTS: "max-age=3600"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := httpsClient(roots, tc.host, g.httpsAddr)
			resp, got := getEcho(t, client, httpsURL(tc.host, g.httpsAddr, "/hello/world?q=1&r=two"), tc.host, tc.headers...)
			if len(resp.TLS.VerifiedChains) == 0 {
				t.Fatal("no verified chain")
			}
			if leaf := resp.TLS.PeerCertificates[0]; leaf.VerifyHostname(tc.host) != nil {
				t.Errorf("leaf certificate names %v %v, not %s", leaf.DNSNames, leaf.IPAddresses, tc.host)
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); !hstsMatches(hsts, tc.wantHSTS) {
				t.Errorf("Strict-Transport-Security = %q, want %q", hsts, tc.wantHSTS)
			}
			want := echo{
				Host:           tc.wantHost,
				Path:           "/hello/world",
				Query:          "q=1&r=two",
				ForwardedFor:   "127.0.0.1",
				ForwardedProto: "https",
				ForwardedHost:  tc.host,
				Proto:          "HTTP/1.1",
			}
			if got != want {
				t.Errorf("backend saw\n  %+v\nwant\n  %+v", got, want)
			}
		})
	}

	t.Run("http2", func(t *testing.T) {
		client := httpsClient(roots, "app.test", g.httpsAddr)
		client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
		resp, got := getEcho(t, client, httpsURL("app.test", g.httpsAddr, "/h2"), "app.test")
		if resp.ProtoMajor != 2 || got.Path != "/h2" || got.ForwardedProto != "https" {
			t.Errorf("client spoke %s; backend saw %+v", resp.Proto, got)
		}
	})

	// The first site also serves names it does not list, and clients that
	// send no SNI (those that connect by IP address).
	t.Run("unknown_or_no_sni_gets_first_site", func(t *testing.T) {
		for _, sni := range []string{"unknown.test", ""} {
			conf := &tls.Config{
				ServerName:         sni,
				InsecureSkipVerify: true, // verified below against app.test instead
				VerifyConnection: func(cs tls.ConnectionState) error {
					inter := x509.NewCertPool()
					for _, c := range cs.PeerCertificates[1:] {
						inter.AddCert(c)
					}
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "app.test", Roots: roots, Intermediates: inter})
					return err
				},
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.httpsAddr, conf)
			if err != nil {
				t.Errorf("SNI %q: want app.test's certificate: %v", sni, err)
				continue
			}
			conn.Close()
		}
		_, got := getEcho(t, httpsClient(roots, "app.test", g.httpsAddr), httpsURL("app.test", g.httpsAddr, "/"), "unknown.test")
		if got.Host != "unknown.test" {
			t.Errorf("Host unknown.test: backend saw Host %q", got.Host)
		}
	})

	t.Run("ca_root_while_running", func(t *testing.T) {
		res := runCLI(t, nil, "ca", "root", "--config", file)
		if res.code != 0 || res.stdout != string(rootPEM) {
			t.Fatalf("gateway ca root while the gateway runs: want the same PEM on stdout; got %s", res)
		}
	})

	t.Run("root_survives_restart", func(t *testing.T) {
		g.stop(t)
		if again := exportRoot(t, file); !bytes.Equal(again, rootPEM) {
			t.Fatalf("root changed across a restart:\nbefore\n%s\nafter\n%s", rootPEM, again)
		}
		g2 := startGateway(t, file)
		client := httpsClient(roots, "app.test", g2.httpsAddr)
		getEcho(t, client, httpsURL("app.test", g2.httpsAddr, "/"), "app.test")
		g2.stop(t)
	})
}

// hstsMatches reports whether header carries max-age want ("" wants no header).
func hstsMatches(header, want string) bool {
	if want == "" {
		return header == ""
	}
	for _, part := range strings.Split(header, ";") {
		if strings.TrimSpace(part) == want {
			return true
		}
	}
	return false
}

// TestRedirect checks that plain HTTP is sent to HTTPS with a 308 that keeps
// the path and query.
func TestRedirect(t *testing.T) {
	t.Parallel()
	backend := newEchoBackend(t, nil)
	cfg := newConfig(t, backend.URL, "app.test")
	cfg.HTTP.RedirectListen = "127.0.0.1:0"
	g := startGateway(t, cfg.write(t))
	if g.redirectAddr == "" {
		t.Fatal(`"gateway ready" has no redirect_addr`)
	}
	_, httpsPort, _ := net.SplitHostPort(g.httpsAddr)

	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, target := range []string{"/", "/some/path?x=1&y=2", "/a%20b/c?q=%2F%3F&empty="} {
		t.Run(target, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+g.redirectAddr+target, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.test"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect {
				t.Fatalf("status %s, want 308", resp.Status)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatalf("Location %q: %v", resp.Header.Get("Location"), err)
			}
			// The listener is not on 443, so the Location must name its port.
			if loc.Scheme != "https" || loc.Host != net.JoinHostPort("app.test", httpsPort) {
				t.Errorf("Location %q: want https://app.test:%s", loc, httpsPort)
			}
			if loc.RequestURI() != target {
				t.Errorf("Location %q keeps %q of %q", loc, loc.RequestURI(), target)
			}
		})
	}
}

// TestDeadUpstream checks the answer when the upstream refuses connections:
// a 502 with a short body, and an operator-readable log line naming it.
func TestDeadUpstream(t *testing.T) {
	t.Parallel()
	dead := closedPortAddr(t)
	cfg := newConfig(t, "http://"+dead, "app.test")
	file := cfg.write(t)
	roots := testpki.MustPoolOf(t, exportRoot(t, file))
	g := startGateway(t, file)
	client := httpsClient(roots, "app.test", g.httpsAddr)

	for i := range 2 { // the gateway survives and answers again
		mark := g.mark()
		resp, err := client.Get(httpsURL("app.test", g.httpsAddr, "/x"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request %d: status %s, want 502", i, resp.Status)
		}
		if len(body) == 0 || len(body) > 512 {
			t.Errorf("request %d: body of %d bytes, want a short message: %q", i, len(body), body)
		}
		g.waitLogAfter(t, mark, 10*time.Second, "an error naming the upstream "+dead,
			func(line string, e logEntry) bool {
				level := e.str("level")
				return (level == "error" || level == "warn") && strings.Contains(line, dead)
			})
	}
}

// holdBackend is an echo backend whose /hold requests wait in the handler
// until release is called (or the test ends), then answer with payload.
type holdBackend struct {
	url     string
	payload []byte
	entered chan struct{} // receives once per /hold request reaching the handler
	release func()
}

func newHoldBackend(t *testing.T) *holdBackend {
	t.Helper()
	hb := &holdBackend{
		payload: bytes.Repeat([]byte("0123456789abcdef"), 64<<10), // 1 MiB
		entered: make(chan struct{}, 4),
	}
	released := make(chan struct{})
	var once sync.Once
	hb.release = func() { once.Do(func() { close(released) }) }
	backend := newEchoBackend(t, map[string]http.HandlerFunc{
		"/hold": func(w http.ResponseWriter, r *http.Request) {
			hb.entered <- struct{}{}
			select {
			case <-released:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(hb.payload)))
			_, _ = w.Write(hb.payload)
		},
	})
	t.Cleanup(hb.release) // runs before the backend's Close, which waits for handlers
	hb.url = backend.URL
	return hb
}

// heldResult is how a request through the gateway to /hold ended.
type heldResult struct {
	status int
	body   []byte
	err    error
}

// startHeldRequest sends GET /hold through the gateway and waits until the
// backend holds it.
func startHeldRequest(t *testing.T, g *gateway, hb *holdBackend, roots *x509.CertPool) <-chan heldResult {
	t.Helper()
	client := httpsClient(roots, "app.test", g.httpsAddr)
	done := make(chan heldResult, 1)
	go func() {
		resp, err := client.Get(httpsURL("app.test", g.httpsAddr, "/hold"))
		if err != nil {
			done <- heldResult{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- heldResult{status: resp.StatusCode, body: body, err: err}
	}()
	select {
	case <-hb.entered:
	case r := <-done:
		t.Fatalf("request ended before reaching the backend: %+v", r.err)
	case <-time.After(15 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	return done
}

// TestSIGTERMDrains holds a request in the backend, sends SIGTERM, and checks
// that new connections are refused while the request in flight completes and
// the process then exits 0.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	hb := newHoldBackend(t)
	cfg := newConfig(t, hb.url, "app.test")
	cfg.DrainTimeout = "20s"
	file := cfg.write(t)
	roots := testpki.MustPoolOf(t, exportRoot(t, file))
	g := startGateway(t, file)
	done := startHeldRequest(t, g, hb, roots)

	g.signal(t, syscall.SIGTERM)
	testkit.Eventually(t, 10*time.Second, "new connections refused after SIGTERM", func() error {
		c, err := net.DialTimeout("tcp", g.httpsAddr, time.Second)
		if err == nil {
			c.Close()
			return errors.New("the HTTPS listener still accepts connections")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("dial: %w, want connection refused", err)
		}
		return nil
	})
	if g.exited() {
		t.Fatalf("gateway exited (%v) with a request in flight", g.state)
	}

	hb.release()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("request in flight failed during drain: %v", r.err)
		}
		if r.status != http.StatusOK || !bytes.Equal(r.body, hb.payload) {
			t.Fatalf("request in flight: status %d, %d of %d bytes", r.status, len(r.body), len(hb.payload))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the request in flight did not complete after release")
	}
	if code := g.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestSIGTERMDrainTimeout checks that drain_timeout bounds the drain: a
// request that never finishes is cut off and the process still exits 0.
func TestSIGTERMDrainTimeout(t *testing.T) {
	t.Parallel()
	hb := newHoldBackend(t)
	cfg := newConfig(t, hb.url, "app.test")
	cfg.DrainTimeout = "1s"
	file := cfg.write(t)
	roots := testpki.MustPoolOf(t, exportRoot(t, file))
	g := startGateway(t, file)
	done := startHeldRequest(t, g, hb, roots)

	start := time.Now()
	g.signal(t, syscall.SIGTERM)
	code := g.waitExit(t, 15*time.Second)
	took := time.Since(start)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM with a drain timeout, want 0", code)
	}
	if took < 900*time.Millisecond || took > 10*time.Second {
		t.Errorf("exited %s after SIGTERM with drain_timeout 1s", took.Round(time.Millisecond))
	}
	select {
	case r := <-done:
		if r.err == nil && r.status == http.StatusOK && bytes.Equal(r.body, hb.payload) {
			t.Error("the held request completed although the backend never answered")
		}
	case <-time.After(10 * time.Second):
		t.Error("the client of the held request was not disconnected")
	}
}

// TestSlowClientsCutOff checks that a client that connects and stalls, before
// or after the TLS handshake, is disconnected by the gateway's deadlines
// (10 s by default) rather than holding a connection for ever.
func TestSlowClientsCutOff(t *testing.T) {
	t.Parallel()
	backend := newEchoBackend(t, nil)
	cfg := newConfig(t, backend.URL, "app.test")
	file := cfg.write(t)
	roots := testpki.MustPoolOf(t, exportRoot(t, file))
	g := startGateway(t, file)

	cases := []struct {
		name  string
		stall func(t *testing.T) net.Conn // returns the connection left stalled
	}{
		{"silent_before_handshake", func(t *testing.T) net.Conn {
			c, err := net.DialTimeout("tcp", g.httpsAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"partial_request_headers", func(t *testing.T) net.Conn {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.httpsAddr,
				&tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n"); err != nil {
				t.Fatal(err)
			}
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.stall(t)
			defer c.Close()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(25 * time.Second))
			_, err := io.Copy(io.Discard, c) // until the gateway closes it
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the gateway kept a stalled connection open for %s", time.Since(start).Round(time.Second))
			}
			t.Logf("closed by the gateway after %s (%v)", time.Since(start).Round(100*time.Millisecond), err)
		})
	}
}
