package test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ntlmssp "github.com/Azure/go-ntlmssp"
	"github.com/gateway-project/gateway/internal/testpki"
)

// These tests put the real gateway binary in front of iisDouble, a stand-in
// for IIS running a classic ASP.NET application, and drive it with real
// clients: Azure/go-ntlmssp for Windows authentication, coder/websocket,
// net/http for the rest.

// iisGateway starts a gateway with the given sites and returns it with a
// pool trusting its internal CA.
func iisGateway(t *testing.T, sites ...gwSite) (*gateway, *x509.CertPool) {
	t.Helper()
	cfg := newConfig(t, "http://127.0.0.1:1", "unused.test")
	cfg.HTTP.Sites = sites
	file := cfg.write(t)
	roots := testpki.MustPoolOf(t, exportRoot(t, file))
	return startGateway(t, file), roots
}

// ntlmClient is a browser-like client for one user: one TCP connection at
// a time to the gateway (dials counts them), HTTP/1.1, and go-ntlmssp
// answering NTLM and Negotiate challenges.
func ntlmClient(roots *x509.CertPool, host, addr string) (*http.Client, *atomic.Int32) {
	var dials atomic.Int32
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxConnsPerHost: 1,
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: ntlmssp.Negotiator{RoundTripper: tr}}, &dials
}

// call sends a request and decodes the double's JSON answer.
func call(t *testing.T, c *http.Client, method, url, host string, body []byte, basicUser, basicPass string) (int, iisEcho) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPass) // go-ntlmssp turns it into NTLM
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e iisEcho
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s %s: %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode, e
}

// TestIISWindowsAuth drives NTLM, and NTLM inside Negotiate, with a real
// client through the gateway: four users at once, each must authenticate on
// an upstream connection of their own and keep it, POST bodies must survive
// the handshake, and nobody else may ride an authenticated connection.
func TestIISWindowsAuth(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"NTLM", "Negotiate"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			iis := newIISDouble(t, "iis01", scheme, nil)
			g, roots := iisGateway(t, gwSite{Hosts: []string{"app.test"}, Upstreams: []string{iis.url}})
			url := httpsURL("app.test", g.httpsAddr, "/secure/whoami")

			users := []string{"alice", "bob", "carol", "dave"}
			type result struct {
				conns map[int64]bool
				dials int32
			}
			results := make([]result, len(users))
			var wg sync.WaitGroup
			for i, u := range users {
				wg.Go(func() {
					c, dials := ntlmClient(roots, "app.test", g.httpsAddr)
					defer c.Transport.(ntlmssp.Negotiator).RoundTripper.(*http.Transport).CloseIdleConnections()
					seen := map[int64]bool{}
					want := `CORP\` + u
					// The handshake on a GET, then a POST whose body must
					// arrive whole, then requests without credentials that
					// the authenticated connection carries.
					code, e := call(t, c, http.MethodGet, url, "app.test", nil, want, iis.users[u])
					if code != http.StatusOK || e.User != want {
						t.Errorf("%s: GET %d %+v, want 200 as %s", u, code, e, want)
						return
					}
					seen[e.Conn] = true
					body := []byte(strings.Repeat("txtPatientNote="+u+"&", 4096))
					sum := sha256.Sum256(body)
					code, e = call(t, c, http.MethodPost, url, "app.test", body, want, iis.users[u])
					if code != http.StatusOK || e.User != want || e.BodySHA256 != hex.EncodeToString(sum[:]) {
						t.Errorf("%s: POST %d user %q body %d bytes (sha %s), want the whole body as %s", u, code, e.User, e.BodyLen, e.BodySHA256, want)
					}
					seen[e.Conn] = true
					for range 5 {
						code, e = call(t, c, http.MethodGet, url, "app.test", nil, "", "")
						if code != http.StatusOK || e.User != want {
							t.Errorf("%s: later request %d %+v, want 200 as %s on the same connection", u, code, e, want)
						}
						seen[e.Conn] = true
					}
					results[i] = result{conns: seen, dials: dials.Load()}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			record, shared := iis.authRecord()
			if len(shared) > 0 {
				t.Fatalf("upstream connections authenticated for two users: %v", shared)
			}
			owner := map[int64]string{}
			for i, u := range users {
				r := results[i]
				authConns := record[`CORP\`+u]
				if len(r.conns) != 1 || len(authConns) != 1 || !r.conns[authConns[0]] {
					t.Errorf("%s: served on upstream connections %v, authenticated on %v; want one, the same", u, r.conns, authConns)
				}
				if r.dials != 1 {
					t.Errorf("%s: the client opened %d connections, want 1", u, r.dials)
				}
				for c := range r.conns {
					if prev, dup := owner[c]; dup {
						t.Errorf("upstream connection %d served both %s and %s", c, prev, u)
					}
					owner[c] = u
				}
			}
			// A client without credentials gets the challenge, never
			// someone's authenticated connection.
			anon := httpsClient(roots, "app.test", g.httpsAddr)
			for range 8 {
				if code, e := call(t, anon, http.MethodGet, url, "app.test", nil, "", ""); code != http.StatusUnauthorized {
					t.Fatalf("anonymous client: %d %+v, want 401", code, e)
				}
			}
			t.Logf("%s: %d users, upstream connections %v", scheme, len(users), owner)
		})
	}
}

// TestIISZeroCodeFixes checks what the gateway repairs in a legacy
// application's answers, and what it tells the application.
func TestIISZeroCodeFixes(t *testing.T) {
	t.Parallel()
	iis := newIISDouble(t, "iis01", "NTLM", nil)
	g, roots := iisGateway(t, gwSite{
		Hosts:                   []string{"app.test"},
		Upstreams:               []string{iis.url},
		InternalNames:           []string{iis.internal},
		CookieHTTPOnly:          boolPtr(true),
		CookieSameSite:          "lax",
		UpgradeInsecureRequests: boolPtr(true),
		RequestHeaders:          map[string]string{"X-ARR-SSL": "2048|256|CN=Gateway|CN=app.test"},
	})
	client := httpsClient(roots, "app.test", g.httpsAddr)
	resp, err := client.Get(httpsURL("app.test", g.httpsAddr, "/login"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(g.httpsAddr)
	public := "https://app.test:" + port
	if got, want := resp.Header.Get("Location"), public+"/Account/Login.aspx?ReturnUrl=%2fsecure%2f"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("Refresh"), "5; url="+public+"/timeout.aspx"; got != want {
		t.Errorf("Refresh %q, want %q", got, want)
	}
	cookies := resp.Header.Values("Set-Cookie")
	if len(cookies) != 2 {
		t.Fatalf("Set-Cookie %q", cookies)
	}
	for _, c := range cookies {
		for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(c, attr) {
				t.Errorf("Set-Cookie %q lacks %s", c, attr)
			}
		}
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != "upgrade-insecure-requests" {
		t.Errorf("Content-Security-Policy %q", got)
	}

	_, e := getIIS(t, client, httpsURL("app.test", g.httpsAddr, "/Default.aspx"), "X-ARR-ClientCert", "c3Bvb2Y=", "X-ARR-SSL", "spoofed")
	if e.XFProto != "https" || e.ARRSSL != "2048|256|CN=Gateway|CN=app.test" || e.ClientCert != "" || e.Proto != "HTTP/1.1" || e.Host != "app.test:"+port {
		t.Errorf("the application saw %+v", e)
	}
}

// getIIS sends a GET with extra headers (name, value, ...) and decodes the
// double's echo.
func getIIS(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, iisEcho) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e iisEcho
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("GET %s: %q: %v", url, data, err)
		}
	}
	return resp, e
}

// TestIISClientCertificates checks client_auth required and optional, the
// certificate forwarded as X-ARR-ClientCert, and forged headers removed.
func TestIISClientCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Clinic smart cards")
	dir := t.TempDir()
	caFile := writeFile(t, dir, "cards.pem", ca.PEM)
	card := ca.issueClient(t, "dr.smith")
	iis := newIISDouble(t, "iis01", "NTLM", nil)
	g, roots := iisGateway(t,
		gwSite{Hosts: []string{"secure.test"}, Upstreams: []string{iis.url}, ClientAuth: &gwClientAuth{Mode: "required", CAFile: caFile}},
		gwSite{Hosts: []string{"optional.test"}, Upstreams: []string{iis.url}, ClientAuth: &gwClientAuth{Mode: "optional", CAFile: caFile}},
	)
	want := base64.StdEncoding.EncodeToString(card.Leaf.Raw)
	withCard := func(host string, cert *tls.Certificate) *http.Client {
		c := httpsClient(roots, host, g.httpsAddr)
		if cert != nil {
			c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		return c
	}
	forged := []string{"X-ARR-ClientCert", base64.StdEncoding.EncodeToString([]byte("forged"))}

	_, e := getIIS(t, withCard("secure.test", &card), httpsURL("secure.test", g.httpsAddr, "/"), forged...)
	if e.ClientCert != want {
		t.Errorf("required: IIS saw X-ARR-ClientCert %q, want the card's DER in base64", e.ClientCert)
	}
	if _, err := withCard("secure.test", nil).Get(httpsURL("secure.test", g.httpsAddr, "/")); err == nil {
		t.Error("required: a client without a certificate was let in")
	}
	_, e = getIIS(t, withCard("optional.test", &card), httpsURL("optional.test", g.httpsAddr, "/"), forged...)
	if e.ClientCert != want {
		t.Errorf("optional with a card: X-ARR-ClientCert %q", e.ClientCert)
	}
	resp, e := getIIS(t, withCard("optional.test", nil), httpsURL("optional.test", g.httpsAddr, "/"), forged...)
	if resp.StatusCode != http.StatusOK || e.ClientCert != "" {
		t.Errorf("optional without a card: %d, X-ARR-ClientCert %q; want 200 and no header", resp.StatusCode, e.ClientCert)
	}
}

// TestIISUpstreamHTTPS verifies IIS's own HTTPS binding, and fails with a
// clear 502 when the configured CA is not the one that signed it.
func TestIISUpstreamHTTPS(t *testing.T) {
	t.Parallel()
	ca, wrong := newTestCA(t, "Corp IIS CA"), newTestCA(t, "Another CA")
	dir := t.TempDir()
	certPEM, keyPEM, _ := ca.issue(t, "iis01.corp.local")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	iis := newIISDouble(t, "iis01", "NTLM", &cert)
	g, roots := iisGateway(t,
		gwSite{Hosts: []string{"good.test"}, Upstreams: []string{iis.url},
			UpstreamTLS: &gwUpstreamTLS{CAFile: writeFile(t, dir, "ca.pem", ca.PEM), ServerName: "iis01.corp.local"}},
		gwSite{Hosts: []string{"bad.test"}, Upstreams: []string{iis.url},
			UpstreamTLS: &gwUpstreamTLS{CAFile: writeFile(t, dir, "wrong.pem", wrong.PEM), ServerName: "iis01.corp.local"}},
	)
	resp, e := getIIS(t, httpsClient(roots, "good.test", g.httpsAddr), httpsURL("good.test", g.httpsAddr, "/"))
	if resp.StatusCode != http.StatusOK || e.Server != "iis01" || e.Proto != "HTTP/1.1" {
		t.Fatalf("verified upstream: %d %+v", resp.StatusCode, e)
	}
	mark := g.mark()
	resp, err = httpsClient(roots, "bad.test", g.httpsAddr).Get(httpsURL("bad.test", g.httpsAddr, "/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "certificate could not be verified") {
		t.Errorf("wrong CA: %d %q, want 502 naming the certificate", resp.StatusCode, body)
	}
	g.waitLogAfter(t, mark, 10*time.Second, "an error with error_kind tls", func(_ string, e logEntry) bool {
		return e.str("msg") == "upstream request failed" && e.str("error_kind") == "tls" && e.str("upstream") == iis.url
	})
}

// TestIISRequestBodyLimit checks max_request_body: a short 413 page.
func TestIISRequestBodyLimit(t *testing.T) {
	t.Parallel()
	iis := newIISDouble(t, "iis01", "NTLM", nil)
	g, roots := iisGateway(t, gwSite{Hosts: []string{"app.test"}, Upstreams: []string{iis.url}, MaxRequestBody: 1 << 20})
	client := httpsClient(roots, "app.test", g.httpsAddr)
	for _, tc := range []struct {
		size   int
		status int
	}{{1 << 20, http.StatusOK}, {2 << 20, http.StatusRequestEntityTooLarge}} {
		resp, err := client.Post(httpsURL("app.test", g.httpsAddr, "/upload"), "application/octet-stream",
			io.LimitReader(&patternReader{}, int64(tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%d bytes: status %d %q, want %d", tc.size, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusRequestEntityTooLarge && (len(body) > 200 || !strings.HasPrefix(string(body), "413")) {
			t.Errorf("413 body %q, want a short message", body)
		}
	}
}
