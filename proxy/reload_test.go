package proxy

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gateway-project/gateway/configs"
)

// twoSites serves app.example.com from a and other.example.com from b.
func twoSites(a, b string) configs.HTTP {
	return configs.HTTP{Sites: []configs.Site{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{a}},
		{Hosts: []string{"other.example.com"}, Upstreams: []string{b}},
	}}
}

// TestReloadSites swaps the site table of a serving Server: an added site
// answers, a removed one falls to the default site, an unchanged one is
// carried over as the same object, and a kept-alive connection sees the new
// table on its next request.
func TestReloadSites(t *testing.T) {
	a, b, c := echoBackend(t, "a"), echoBackend(t, "b"), echoBackend(t, "c")
	p := startProxy(t, twoSites(a.URL, b.URL))
	if e := p.getEcho(t, "other.example.com", "/", nil); e.Backend != "b" {
		t.Fatalf("other.example.com served by %q before the reload", e.Backend)
	}
	kept := p.srv.currentSites()[0]

	next := configs.HTTP{Listen: "127.0.0.1:0", Sites: []configs.Site{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{a.URL}},
		{Hosts: []string{"new.example.com"}, Upstreams: []string{c.URL}},
	}}
	// The same listen text as the running configuration: no rebinding.
	p.srv.mu.Lock()
	next.Listen = p.srv.cfg.Listen
	p.srv.mu.Unlock()
	sum, err := p.srv.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.SitesAdded, []string{"new.example.com"}) || !slices.Equal(sum.SitesRemoved, []string{"other.example.com"}) ||
		sum.SitesKept != 1 || sum.ListenChange {
		t.Errorf("summary %+v", sum)
	}
	if p.srv.currentSites()[0] != kept {
		t.Error("the unchanged site was rebuilt; it must be carried over with its state")
	}
	for host, want := range map[string]string{"new.example.com": "c", "other.example.com": "a", "app.example.com": "a"} {
		if e := p.getEcho(t, host, "/", nil); e.Backend != want {
			t.Errorf("%s after the reload served by %q, want %q", host, e.Backend, want)
		}
	}
}

// TestReloadListen moves the HTTPS listener: the new address serves, the
// old one refuses new connections, and a request in flight on the old
// address finishes.
func TestReloadListen(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	entered := make(chan struct{}, 1)
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "done")
	})
	p := startProxy(t, oneSite(slow.URL))
	t.Cleanup(releaseAll) // before the backend's Close, which waits for handlers
	oldAddr := p.srv.HTTPSAddr().String()
	inflight := make(chan string, 1)
	go func() {
		resp, err := p.client.Get(p.base + "/slow")
		if err != nil {
			inflight <- err.Error()
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 16)
		n, _ := resp.Body.Read(buf)
		inflight <- string(buf[:n])
	}()
	<-entered

	// A listen text other than the running "127.0.0.1:0": a new address.
	cfg := oneSite(slow.URL)
	cfg.Listen = "localhost:0"
	cfg.RedirectListen = "127.0.0.1:0"
	st, err := p.srv.Stage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum := st.Commit()
	if !sum.ListenChange || sum.HTTPSAddr == "" || sum.HTTPSAddr == oldAddr || sum.RedirectAddr == "" {
		t.Fatalf("summary %+v", sum)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS()}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + sum.HTTPSAddr + "/")
	if err != nil {
		t.Fatalf("the new address: %v", err)
	}
	resp.Body.Close()
	if conn, err := net.DialTimeout("tcp", oldAddr, 5*time.Second); err == nil {
		conn.Close()
		t.Error("the old address still accepts connections")
	}
	releaseAll()
	if got := <-inflight; got != "done" {
		t.Errorf("the request in flight on the old address got %q", got)
	}
	if p.srv.RedirectAddr() == nil {
		t.Error("the redirect listener enabled by the reload has no address")
	}
}

// TestReloadAbort: a staged reload that is given up leaves everything as
// it was and frees the address it bound.
func TestReloadAbort(t *testing.T) {
	a := echoBackend(t, "a")
	p := startProxy(t, oneSite(a.URL))
	cfg := oneSite(a.URL)
	cfg.Listen = "localhost:0"
	st, err := p.srv.Stage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bound := st.httpsLn.Addr().String()
	st.Abort()
	if conn, err := net.DialTimeout("tcp", bound, 5*time.Second); err == nil {
		conn.Close()
		t.Error("the address bound for an aborted reload still accepts connections")
	}
	p.getEcho(t, "app.example.com", "/", nil)
	// A site that cannot be built refuses the reload.
	bad := oneSite("http://[::1")
	bad.Listen = "127.0.0.1:0"
	if _, err := p.srv.Reload(bad); err == nil || !strings.Contains(err.Error(), "upstreams[0]") {
		t.Errorf("Reload with a bad upstream = %v, want an error naming the key", err)
	}
	if _, err := p.srv.Reload(configs.HTTP{Sites: oneSite(a.URL).Sites}); err != ErrDisabled {
		t.Errorf("Reload with an empty listen = %v, want ErrDisabled", err)
	}
}
