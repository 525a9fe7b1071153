package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
)

// alpn opens a TLS connection to addr for serverName offering h2 and
// http/1.1, as browsers do, and returns the protocol the server chose.
func alpn(t *testing.T, addr, serverName string) string {
	t.Helper()
	conf := clientTLS()
	conf.ServerName = serverName
	conf.NextProtos = []string{"h2", "http/1.1"}
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatalf("handshake for %s: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().NegotiatedProtocol
}

// h2Client is a client offering h2 with the TLS server name serverName,
// whatever the URL's host, over one connection.
func h2Client(serverName string) *http.Client {
	conf := clientTLS()
	conf.ServerName = serverName
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}}
}

// savedNames reads an HTTP1OnlyFile, failing the test on an error.
func savedNames(t *testing.T, path string) []string {
	t.Helper()
	names, err := HTTP1OnlyFile(path).Load()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestHTTP1OnlyFileRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage") // created by Save
	f := HTTP1OnlyFile(filepath.Join(dir, "http1-only.json"))
	if names, err := f.Load(); err != nil || names != nil {
		t.Fatalf("missing file: %v, %v; want no names and no error", names, err)
	}
	for _, want := range [][]string{{"app.example.com", "*.corp.example.com"}, {"other.example.com"}, {}} {
		if err := f.Save(want); err != nil {
			t.Fatal(err)
		}
		got, err := f.Load()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("saved %q, loaded %q (%v)", want, got, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "http1-only.json" {
		t.Errorf("storage holds %v, want the file alone (no temporary file left)", entries)
	}
}

func TestHTTP1OnlyFileCorrupt(t *testing.T) {
	tests := []struct{ name, content string }{
		{"empty", ""},
		{"truncated", `{"names": ["app.exa`},
		{"not an object", `["app.example.com"]`},
		{"names not a list", `{"names": "app.example.com"}`},
		{"name not a string", `{"names": [42]}`},
		{"two objects", `{"names": []} {"names": []}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "http1-only.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := HTTP1OnlyFile(path).Load(); err == nil {
				t.Fatal("Load accepted it")
			}
			// Not fatal to the Server: the site is probed as if the file
			// were missing, and the file is written anew.
			b := newConnAuthBackend(t, "NTLM")
			cfg := oneSite(b.URL)
			cfg.Sites[0].WindowsAuth = true
			p := startProxy(t, cfg, WithHTTP1OnlyFile(path))
			if n := p.logs.FilterMessage("ignoring the saved http/1.1-only site names; they will be found again").Len(); n != 1 {
				t.Errorf("%d warnings about the file, want 1", n)
			}
			if got := alpn(t, p.srv.HTTPSAddr().String(), "app.example.com"); got != "http/1.1" {
				t.Errorf("ALPN %q after the probe met a challenge, want http/1.1", got)
			}
			p.srv.http1.wait()
			if got := savedNames(t, path); !slices.Equal(got, []string{"app.example.com"}) {
				t.Errorf("file rewritten with %q", got)
			}
		})
	}
}

// TestHTTP2ProbeAtStart: the first handshake for a site's name already
// reflects what its upstream answers at /, and only NTLM or Negotiate
// challenges move it to HTTP/1.1.
func TestHTTP2ProbeAtStart(t *testing.T) {
	ntlm := func(t *testing.T) string { return newConnAuthBackend(t, "NTLM").URL }
	tests := []struct {
		name        string
		upstream    func(t *testing.T) string
		windowsAuth bool
		wantALPN    string
		wantStatus  int // of the probe; 0: failed or not sent
		probed      bool
	}{
		{name: "NTLM challenge", upstream: ntlm, windowsAuth: true, wantALPN: "http/1.1", wantStatus: 401, probed: true},
		{name: "Negotiate challenge", windowsAuth: true, wantALPN: "http/1.1", wantStatus: 401, probed: true,
			upstream: func(t *testing.T) string { return newConnAuthBackend(t, "Negotiate").URL }},
		{name: "Basic challenge", windowsAuth: true, wantALPN: "h2", wantStatus: 401, probed: true,
			upstream: func(t *testing.T) string {
				return backend(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("WWW-Authenticate", `Basic realm="intranet"`)
					w.WriteHeader(http.StatusUnauthorized)
				}).URL
			}},
		{name: "anonymous home page", windowsAuth: true, wantALPN: "h2", wantStatus: 200, probed: true,
			upstream: func(t *testing.T) string {
				b := newConnAuthBackend(t, "NTLM")
				b.openRoot.Store(true)
				return b.URL
			}},
		{name: "upstream down", upstream: deadUpstream, windowsAuth: true, wantALPN: "h2", probed: true},
		{name: "windows_auth off", upstream: ntlm, windowsAuth: false, wantALPN: "h2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "http1-only.json")
			cfg := oneSite(tc.upstream(t))
			cfg.Sites[0].WindowsAuth = tc.windowsAuth
			p := startProxy(t, cfg, WithHTTP1OnlyFile(path))
			if got := alpn(t, p.srv.HTTPSAddr().String(), "app.example.com"); got != tc.wantALPN {
				t.Errorf("first handshake chose %q, want %q", got, tc.wantALPN)
			}
			probes := p.logs.FilterMessage("http2 probe").All()
			if !tc.probed {
				if len(probes) != 0 {
					t.Errorf("probed: %v", probes)
				}
				return
			}
			if len(probes) != 1 {
				t.Fatalf("%d probe log lines, want 1", len(probes))
			}
			f := probes[0].ContextMap()
			if status, _ := f["status"].(int64); int(status) != tc.wantStatus || f["site"] != "app.example.com" {
				t.Errorf("probe logged %v, want site app.example.com and status %d", f, tc.wantStatus)
			}
			p.srv.http1.wait()
			var want []string
			if tc.wantALPN == "http/1.1" {
				want = []string{"app.example.com"}
			}
			if got := savedNames(t, path); !slices.Equal(got, want) {
				t.Errorf("saved %q, want %q", got, want)
			}
		})
	}
}

// TestHTTP2LearnedNamesSurviveRestart: a site moved to HTTP/1.1 by a
// challenge in traffic is offered HTTP/1.1 from the first handshake of the
// next Server on the same file, even with its upstream down (no probe can
// find it again).
func TestHTTP2LearnedNamesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "http1-only.json")
	b := newConnAuthBackend(t, "NTLM")
	b.openRoot.Store(true) // the probe keeps HTTP/2; /app challenges
	cfg := oneSite(b.URL)
	cfg.Sites[0].Hosts = []string{"app.example.com", "alias.example.com"}
	cfg.Sites[0].WindowsAuth = true
	p := startProxy(t, cfg, WithHTTP1OnlyFile(path))
	addr := p.srv.HTTPSAddr().String()
	if got := alpn(t, addr, "app.example.com"); got != "h2" {
		t.Fatalf("before any challenge ALPN chose %q, want h2", got)
	}
	c := p.oneConnClient(true)
	t.Cleanup(c.CloseIdleConnections)
	if code, _, _, _ := send(t, c, http.MethodGet, p.base+"/app", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("got %d, want the 401 challenge", code)
	}
	c.CloseIdleConnections()
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	if got, want := savedNames(t, path), []string{"alias.example.com", "app.example.com"}; !slices.Equal(got, want) {
		t.Fatalf("saved %q, want %q", got, want)
	}

	cfg.Sites[0].Upstreams = []string{deadUpstream(t)}
	q := startProxy(t, cfg, WithHTTP1OnlyFile(path))
	for _, name := range []string{"app.example.com", "alias.example.com"} {
		if got := alpn(t, q.srv.HTTPSAddr().String(), name); got != "http/1.1" {
			t.Errorf("%s: first handshake after the restart chose %q, want http/1.1", name, got)
		}
	}
	if n := q.logs.FilterMessage("http2 probe").Len(); n != 0 {
		t.Errorf("%d probes of a site known to need HTTP/1.1, want none", n)
	}
}

// TestHTTP2Modes checks what each http2 mode offers per name, and what a
// Windows-auth challenge over HTTP/2 does under on.
func TestHTTP2Modes(t *testing.T) {
	challenging := newConnAuthBackend(t, "NTLM")
	anonymousRoot := newConnAuthBackend(t, "NTLM")
	anonymousRoot.openRoot.Store(true)
	plain := echoBackend(t, "plain")
	site := func(host, upstream string, windowsAuth bool, mode configs.HTTP2Mode) configs.Site {
		return configs.Site{Hosts: []string{host}, Upstreams: []string{upstream}, WindowsAuth: windowsAuth, HTTP2: mode}
	}
	cfg := configs.HTTP{Sites: []configs.Site{
		site("plain.example.com", plain.URL, false, ""), // "" is auto
		site("auto.example.com", challenging.URL, true, configs.HTTP2Auto),
		site("on.example.com", challenging.URL, true, configs.HTTP2On),
		site("off.example.com", plain.URL, false, configs.HTTP2Off),
		site("offauth.example.com", anonymousRoot.URL, true, configs.HTTP2Off),
	}}
	p := startProxy(t, cfg)
	addr := p.srv.HTTPSAddr().String()
	want := map[string]string{
		"plain.example.com":   "h2",
		"auto.example.com":    "http/1.1",
		"on.example.com":      "h2",
		"off.example.com":     "http/1.1",
		"offauth.example.com": "http/1.1",
	}
	for name, proto := range want {
		if got := alpn(t, addr, name); got != proto {
			t.Errorf("%s: ALPN chose %q, want %q", name, got, proto)
		}
	}
	if n := p.logs.FilterMessage("http2 probe").Len(); n != 1 {
		t.Errorf("%d probes, want 1 (auto.example.com: on and off are never probed)", n)
	}

	t.Run("on passes the challenge without GOAWAY", func(t *testing.T) {
		c := h2Client("on.example.com")
		t.Cleanup(c.CloseIdleConnections)
		for i := range 2 {
			var reused bool
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
			})
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/secure", nil)
			req.Host = "on.example.com"
			res, body := do(t, c, req)
			if res.StatusCode != http.StatusUnauthorized || res.ProtoMajor != 2 || res.Header.Get("Www-Authenticate") != "NTLM" {
				t.Fatalf("request %d: %s %d %v %q, want the 401 challenge over HTTP/2", i, res.Proto, res.StatusCode, res.Header, body)
			}
			if i > 0 && !reused {
				t.Error("the connection was not reused after the challenge (GOAWAY)")
			}
		}
		if got := alpn(t, addr, "on.example.com"); got != "h2" {
			t.Errorf("after a challenge over HTTP/2, on.example.com is offered %q, want h2", got)
		}
	})

	t.Run("off refuses HTTP/2 from another name's connection", func(t *testing.T) {
		// A browser reuses its HTTP/2 connection for every name the
		// certificate covers; the site sends it to a connection of its own.
		c := h2Client("plain.example.com")
		t.Cleanup(c.CloseIdleConnections)
		req, _ := http.NewRequest(http.MethodGet, p.base+"/", nil)
		req.Host = "off.example.com"
		if res, body := do(t, c, req); res.StatusCode != http.StatusMisdirectedRequest || res.ProtoMajor != 2 {
			t.Errorf("%s %d %q, want 421 over HTTP/2", res.Proto, res.StatusCode, body)
		}
		req.Host = "plain.example.com"
		if res, _ := do(t, c, req); res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
			t.Errorf("plain.example.com: %s %d, want 200 over HTTP/2", res.Proto, res.StatusCode)
		}
	})
}

// TestHTTP2ProbeAfterReload: a site added by a reload is probed before its
// first handshake, and kept sites are probed again.
func TestHTTP2ProbeAfterReload(t *testing.T) {
	kept := newConnAuthBackend(t, "NTLM")
	kept.openRoot.Store(true)
	added := newConnAuthBackend(t, "NTLM")
	cfg := oneSite(kept.URL)
	cfg.Sites[0].WindowsAuth = true
	p := startProxy(t, cfg)
	addr := p.srv.HTTPSAddr().String()
	if got := alpn(t, addr, "app.example.com"); got != "h2" {
		t.Fatalf("app.example.com: %q before the reload, want h2", got)
	}

	// IIS's administrator turns anonymous access off, then the gateway is
	// reloaded with a new site.
	kept.openRoot.Store(false)
	next := cfg
	next.Sites = append(slices.Clone(cfg.Sites), configs.Site{Hosts: []string{"new.example.com"}, Upstreams: []string{added.URL}, WindowsAuth: true})
	p.srv.mu.Lock()
	next.Listen = p.srv.cfg.Listen
	p.srv.mu.Unlock()
	if _, err := p.srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := alpn(t, addr, "new.example.com"); got != "http/1.1" {
		t.Errorf("new.example.com: first handshake chose %q, want http/1.1", got)
	}
	// The kept site's handshakes do not wait for its new probe.
	testkit.EventuallyTrue(t, "the kept site's second probe", func() bool { return p.logs.FilterMessage("http2 probe").Len() == 3 })
	if got := alpn(t, addr, "app.example.com"); got != "http/1.1" {
		t.Errorf("app.example.com: %q after the reload's probe met a challenge, want http/1.1", got)
	}
}

// failingStore is an HTTP1OnlyStore that cannot load or save.
type failingStore struct{ saves chan []string }

var errStore = errors.New("store unavailable")

func (f failingStore) Load() ([]string, error) { return nil, errStore }
func (f failingStore) Save(names []string) error {
	f.saves <- names
	return errStore
}

// TestHTTP1OnlyStoreErrors: a store that fails is logged, and the site
// still moves to HTTP/1.1 in memory.
func TestHTTP1OnlyStoreErrors(t *testing.T) {
	st := failingStore{saves: make(chan []string, 1)}
	n := newHTTP1Names(st, zaptest.NewLogger(t))
	n.add([]string{"App.Example.com.", "*.example.com"})
	n.wait()
	if got := <-st.saves; !slices.Equal(got, []string{"*.example.com", "app.example.com"}) {
		t.Errorf("Save got %q, want canonical names, sorted", got)
	}
	if !n.has([]string{"APP.example.com"}) || n.has([]string{"other.example.com"}) {
		t.Error("the names added are not the ones kept")
	}
	n.add([]string{"app.example.com"}) // nothing new: no Save
	n.wait()
	select {
	case got := <-st.saves:
		t.Errorf("saved %q again without a change", got)
	default:
	}
}
