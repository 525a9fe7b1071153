package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/configs"
)

func testRewriter(t testing.TB, cfg configs.Site, upstreams ...string) responseRewriter {
	t.Helper()
	var ups []*upstream
	for _, raw := range upstreams {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, &upstream{raw: raw, url: u})
	}
	rw, err := newResponseRewriter(cfg, ups)
	if err != nil {
		t.Fatal(err)
	}
	return rw
}

func TestRewriteLocation(t *testing.T) {
	rw := testRewriter(t, configs.Site{
		RewriteLocation: true,
		InternalNames:   []string{"iis01.corp.local", "http://iis02:8080", "iis03:81"},
	}, "http://10.0.0.5:80", "https://10.0.0.6", "http://10.0.0.7:8080/app")
	const host = "portal.example.com"
	tests := []struct {
		in, want string
	}{
		{"http://10.0.0.5/login.aspx?ReturnUrl=%2f", "https://portal.example.com/login.aspx?ReturnUrl=%2f"},
		{"http://10.0.0.5:80/a", "https://portal.example.com/a"},
		{"HTTP://10.0.0.5/a#frag", "https://portal.example.com/a#frag"},
		{"https://10.0.0.6/secure", "https://portal.example.com/secure"},
		{"https://10.0.0.6:443/secure", "https://portal.example.com/secure"},
		{"http://10.0.0.7:8080/app/page.aspx", "https://portal.example.com/page.aspx"},
		{"http://10.0.0.7:8080/app", "https://portal.example.com/"},
		{"http://10.0.0.7:8080/application", "https://portal.example.com/application"},
		{"http://iis01.corp.local/x", "https://portal.example.com/x"},
		{"http://IIS01.corp.local:8443/x", "https://portal.example.com/x"}, // a bare name: any port
		{"https://iis01.corp.local/x", "https://portal.example.com/x"},
		{"http://iis02:8080/y?z=1", "https://portal.example.com/y?z=1"},
		{"http://iis03:81/w", "https://portal.example.com/w"},
		{"//iis01.corp.local/s", "https://portal.example.com/s"},
		{"http://10.0.0.5", "https://portal.example.com/"},
		{"http://10.0.0.5?q", "https://portal.example.com/?q"},
		// The public name over plain http: what ASP.NET builds from the Host
		// header on a plain-HTTP binding.
		{"http://portal.example.com/home", "https://portal.example.com/home"},
		// Left alone.
		{"/relative/path", "/relative/path"},
		{"relative", "relative"},
		{"https://portal.example.com/home", "https://portal.example.com/home"},
		{"http://iis02:9090/y", "http://iis02:9090/y"},   // another port of an exact origin
		{"https://iis02:8080/y", "https://iis02:8080/y"}, // another scheme of an exact origin
		{"http://10.0.0.5:81/a", "http://10.0.0.5:81/a"},
		{"http://www.microsoft.com/", "http://www.microsoft.com/"},
		{"http://user@10.0.0.5/", "http://user@10.0.0.5/"},
		{"mailto:x@10.0.0.5", "mailto:x@10.0.0.5"},
	}
	for _, tc := range tests {
		got, _ := rw.rewriteURL(tc.in, host)
		if got != tc.want {
			t.Errorf("rewriteURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, _ := rw.rewriteURL("http://10.0.0.5/a", "portal.example.com:8443"); got != "https://portal.example.com:8443/a" {
		t.Errorf("client host with port: got %q", got)
	}
}

func TestRewriteRefreshAndHeaders(t *testing.T) {
	rw := testRewriter(t, configs.Site{RewriteLocation: true, InternalNames: []string{"iis01"}}, "http://10.0.0.5")
	h := http.Header{
		"Location":         {"http://iis01/next.aspx"},
		"Content-Location": {"http://10.0.0.5/doc.pdf"},
		"Refresh":          {"5; url=http://iis01/timeout.aspx"},
	}
	rw.rewrite(h, "app.example.com")
	want := http.Header{
		"Location":         {"https://app.example.com/next.aspx"},
		"Content-Location": {"https://app.example.com/doc.pdf"},
		"Refresh":          {"5; url=https://app.example.com/timeout.aspx"},
	}
	for k, v := range want {
		if h.Get(k) != v[0] {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v[0])
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"0;URL='http://iis01/a'", "0;URL='https://app.example.com/a'"},
		{`0; url="http://iis01/a"`, `0; url="https://app.example.com/a"`},
		{"10", "10"},
		{"3; url=/relative", "3; url=/relative"},
	} {
		if got, _ := rw.rewriteRefresh(tc.in, "app.example.com"); got != tc.want {
			t.Errorf("rewriteRefresh(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A Host that cannot be put into a URL disables the rewrite.
	h = http.Header{"Location": {"http://iis01/x"}}
	rw.rewrite(h, "evil.test/\"><script>")
	if h.Get("Location") != "http://iis01/x" {
		t.Errorf("rewrote to an invalid host: %q", h.Get("Location"))
	}
	// rewrite_location: false leaves everything.
	off := testRewriter(t, configs.Site{InternalNames: []string{"iis01"}}, "http://10.0.0.5")
	h = http.Header{"Location": {"http://iis01/x"}}
	off.rewrite(h, "app.example.com")
	if h.Get("Location") != "http://iis01/x" {
		t.Errorf("rewrite_location false rewrote: %q", h.Get("Location"))
	}
}

func TestRewriteCookies(t *testing.T) {
	tests := []struct {
		name string
		cfg  configs.Site
		in   string
		want string
	}{
		{"secure added", configs.Site{CookieSecure: true},
			"ASP.NET_SessionId=abc; path=/; HttpOnly", "ASP.NET_SessionId=abc; path=/; HttpOnly; Secure"},
		{"secure kept", configs.Site{CookieSecure: true},
			"a=b; secure; path=/", "a=b; secure; path=/"},
		{"no attributes", configs.Site{CookieSecure: true}, "a=b", "a=b; Secure"},
		{"value mentioning secure", configs.Site{CookieSecure: true}, "a=Secure", "a=Secure; Secure"},
		{"httponly", configs.Site{CookieHTTPOnly: true}, ".ASPXAUTH=x; path=/", ".ASPXAUTH=x; path=/; HttpOnly"},
		{"samesite added", configs.Site{CookieSameSite: "lax"}, "a=b; Path=/", "a=b; Path=/; SameSite=Lax"},
		{"samesite replaced", configs.Site{CookieSecure: true, CookieSameSite: "none"},
			"a=b; SameSite=Lax; Secure; Path=/", "a=b; Secure; Path=/; SameSite=None"},
		{"samesite same", configs.Site{CookieSameSite: "strict"}, "a=b; samesite=strict", "a=b; samesite=strict"},
		{"all", configs.Site{CookieSecure: true, CookieHTTPOnly: true, CookieSameSite: "strict"},
			"a=b", "a=b; Secure; HttpOnly; SameSite=Strict"},
		{"off", configs.Site{}, "a=b", "a=b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rw := testRewriter(t, tc.cfg)
			h := http.Header{"Set-Cookie": {tc.in, tc.in}}
			rw.rewrite(h, "app.example.com")
			for _, got := range h["Set-Cookie"] {
				if got != tc.want {
					t.Errorf("Set-Cookie %q became %q, want %q", tc.in, got, tc.want)
				}
			}
		})
	}
}

func TestResponseFixesThroughProxy(t *testing.T) {
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://iis01.corp.local/Account/Login.aspx?ReturnUrl=%2fdefault.aspx")
		w.Header().Add("Set-Cookie", "ASP.NET_SessionId=s1; path=/; HttpOnly")
		w.Header().Add("Set-Cookie", ".ASPXAUTH=t1; path=/")
		w.WriteHeader(http.StatusFound)
	})
	cfg := oneSite(b.URL)
	s := &cfg.Sites[0]
	s.InternalNames = []string{"iis01.corp.local"}
	s.RewriteLocation, s.CookieSecure, s.CookieHTTPOnly, s.UpgradeInsecureRequests = true, true, true, true
	p := startProxy(t, cfg)
	resp, _ := p.get(t, "app.example.com", "/default.aspx", nil)
	if got := resp.Header.Get("Location"); got != "https://app.example.com/Account/Login.aspx?ReturnUrl=%2fdefault.aspx" {
		t.Errorf("Location %q", got)
	}
	want := []string{"ASP.NET_SessionId=s1; path=/; HttpOnly; Secure", ".ASPXAUTH=t1; path=/; Secure; HttpOnly"}
	if got := resp.Header.Values("Set-Cookie"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Set-Cookie %q, want %q", got, want)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != "upgrade-insecure-requests" {
		t.Errorf("Content-Security-Policy %q", got)
	}
}

func TestRequestHeadersAndARRStripping(t *testing.T) {
	b := echoBackend(t, "b")
	cfg := oneSite(b.URL)
	cfg.Sites[0].RequestHeaders = map[string]string{"x-arr-ssl": "2048|256|CN=Gateway|CN=app", "HTTPS": "on"}
	p := startProxy(t, cfg)
	got := p.getEcho(t, "app.example.com", "/", http.Header{
		"X-Arr-Ssl":        {"spoofed"},
		"X-Arr-Clientcert": {"MIIBspoofed"},
		"Https":            {"off"},
		"X-Arr-Log-Id":     {"x"},
	})
	for k, want := range map[string]string{
		"X-Arr-Ssl":        "2048|256|CN=Gateway|CN=app",
		"Https":            "on",
		"X-Arr-Clientcert": "",
		"X-Arr-Log-Id":     "",
	} {
		if v := strings.Join(got.Header[k], ","); v != want {
			t.Errorf("upstream saw %s %q, want %q", k, v, want)
		}
	}
}

// BenchmarkRewriteHeaders measures the rewriting of a typical response's
// headers: nothing to change (the common case, no allocation) and a redirect
// plus two cookies to fix.
func BenchmarkRewriteHeaders(b *testing.B) {
	rw := testRewriter(b, configs.Site{
		RewriteLocation: true, CookieSecure: true, InternalNames: []string{"iis01.corp.local"},
	}, "http://10.0.0.5:80")
	clean := http.Header{
		"Location":   {"/Account/Login.aspx"},
		"Set-Cookie": {"ASP.NET_SessionId=s1; path=/; HttpOnly; Secure"},
	}
	b.Run("nothing_to_change", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rw.rewrite(clean, "app.example.com")
		}
	})
	b.Run("redirect_and_cookies", func(b *testing.B) {
		b.ReportAllocs()
		h := http.Header{"Location": {""}, "Set-Cookie": {"", ""}}
		for b.Loop() {
			h["Location"][0] = "http://iis01.corp.local/Account/Login.aspx?ReturnUrl=%2f"
			h["Set-Cookie"][0] = "ASP.NET_SessionId=s1; path=/; HttpOnly"
			h["Set-Cookie"][1] = ".ASPXAUTH=abc; path=/"
			rw.rewrite(h, "app.example.com")
		}
	})
}

func TestRewriteCleanHeadersDoesNotAllocate(t *testing.T) {
	rw := testRewriter(t, configs.Site{RewriteLocation: true, CookieSecure: true, InternalNames: []string{"iis01"}}, "http://10.0.0.5")
	h := http.Header{"Location": {"/login"}, "Set-Cookie": {"a=b; Secure"}, "Refresh": {"5"}}
	if n := testing.AllocsPerRun(100, func() { rw.rewrite(h, "app.example.com") }); n != 0 {
		t.Errorf("%v allocations per response with nothing to change, want 0", n)
	}
}
