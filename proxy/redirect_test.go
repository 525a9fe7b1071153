package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/configs"
)

// rawRequest writes req verbatim to addr and reads the response, for
// requests Go's client will not send (no Host, odd Host values).
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestRedirect(t *testing.T) {
	cfg := configs.HTTP{
		RedirectListen: "127.0.0.1:0",
		Sites: []configs.Site{
			{Hosts: []string{"*.example.com", "app.example.com"}, Upstreams: []string{"http://127.0.0.1:1"}},
		},
	}
	p := startProxy(t, cfg)
	p443 := startProxy(t, cfg, WithRedirectPort(443))
	httpsPort := strconv.Itoa(p.srv.HTTPSAddr().(*net.TCPAddr).Port)

	tests := []struct {
		name     string
		proxy    *testProxy
		request  string
		status   int
		location string
	}{
		{
			name:     "keeps path and query, adds the HTTPS port",
			proxy:    p,
			request:  "GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
			status:   http.StatusPermanentRedirect,
			location: "https://app.example.com:" + httpsPort + "/a/b%20c?x=1&y=%2F",
		},
		{
			name:     "drops the Host port",
			proxy:    p,
			request:  "GET / HTTP/1.1\r\nHost: app.example.com:80\r\n\r\n",
			status:   http.StatusPermanentRedirect,
			location: "https://app.example.com:" + httpsPort + "/",
		},
		{
			name:     "POST stays a 308",
			proxy:    p,
			request:  "POST /login HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 3\r\n\r\na=b",
			status:   http.StatusPermanentRedirect,
			location: "https://app.example.com:" + httpsPort + "/login",
		},
		{
			name:     "port 443 is left out",
			proxy:    p443,
			request:  "GET /x?y HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
			status:   http.StatusPermanentRedirect,
			location: "https://app.example.com/x?y",
		},
		{
			name:     "IPv6 host",
			proxy:    p443,
			request:  "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
			status:   http.StatusPermanentRedirect,
			location: "https://[::1]/",
		},
		{
			name:     "no Host uses the first site's first plain name",
			proxy:    p443,
			request:  "GET /z HTTP/1.0\r\n\r\n",
			status:   http.StatusPermanentRedirect,
			location: "https://app.example.com/z",
		},
		{
			name:    "invalid Host",
			proxy:   p,
			request: "GET / HTTP/1.1\r\nHost: evil$.example.com\r\n\r\n",
			status:  http.StatusBadRequest,
		},
		{
			name:    "Host with an IPv6 zone",
			proxy:   p,
			request: "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n",
			status:  http.StatusBadRequest,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, tc.proxy.srv.RedirectAddr().String(), tc.request)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
		})
	}
}

func TestRedirectChallengeHandler(t *testing.T) {
	const prefix = "/.well-known/acme-challenge/"
	challenge := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
				_, _ = io.WriteString(w, "key-authorization-for-"+token)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	cfg := oneSite("http://127.0.0.1:1")
	cfg.RedirectListen = "127.0.0.1:0"
	p := startProxy(t, cfg, WithChallengeHandler(challenge))
	base := "http://" + p.srv.RedirectAddr().String()

	resp, body := do(t, p.client, mustRequest(t, base+prefix+"x"))
	if resp.StatusCode != http.StatusOK || body != "key-authorization-for-x" {
		t.Errorf("challenge: status %d body %q, want 200 from the challenge handler", resp.StatusCode, body)
	}
	resp, _ = do(t, p.client, mustRequest(t, base+"/other"))
	if resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("other path: status %d, want 308", resp.StatusCode)
	}
}

func TestRedirectDisabled(t *testing.T) {
	p := startProxy(t, oneSite("http://127.0.0.1:1"))
	if a := p.srv.RedirectAddr(); a != nil {
		t.Errorf("RedirectAddr = %v, want nil when redirect_listen is empty", a)
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
