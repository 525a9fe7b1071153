package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ntlmssp "github.com/Azure/go-ntlmssp"
	"github.com/gateway-project/gateway/internal/testpki"
)

// curlResult is what one curl run reports: the status, the HTTP version
// the connection used ("1.1" or "2"), the double's JSON answer on a 200,
// and curl's own messages.
type curlResult struct {
	code    string
	version string
	echo    iisEcho
	stderr  string
}

// curlHTTP2 runs curl offering HTTP/2 (ALPN h2 and http/1.1, as browsers
// do) against the gateway at addr for https://host/path, trusting only
// rootFile; with user set, it authenticates with NTLM (--ntlm sends the
// NEGOTIATE message on the first request, the way browsers do once they
// know the site).
func curlHTTP2(t *testing.T, curl, rootFile, addr, host, path, user, password string) curlResult {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-q", "--silent", "--show-error", "--http2", "--max-time", "20", "--noproxy", "*",
		"--cacert", rootFile, "--resolve", host + ":" + port + ":127.0.0.1",
		"--write-out", "\n%{http_code} %{http_version}"}
	if user != "" {
		args = append(args, "--ntlm", "--user", user+":"+password)
	}
	args = append(args, "https://"+host+":"+port+path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	res := curlResult{stderr: stderr.String()}
	if err != nil {
		t.Fatalf("curl %s%s: %v: %s", host, path, err, res.stderr)
	}
	// The body, then the --write-out line.
	body, trailer := "", string(out)
	if i := strings.LastIndexByte(trailer, '\n'); i >= 0 {
		body, trailer = trailer[:i], trailer[i+1:]
	}
	res.code, res.version, _ = strings.Cut(trailer, " ")
	if res.code == "200" {
		if err := json.Unmarshal([]byte(body), &res.echo); err != nil {
			t.Fatalf("curl %s%s: %q: %v", host, path, body, err)
		}
	}
	return res
}

// requireCurl returns curl's path, skipping the test when it is missing or
// lacks a feature the test needs.
func requireCurl(t *testing.T, features ...string) string {
	t.Helper()
	curl := proofTool(t, "curl", "the Debian package curl")
	out, err := exec.Command(curl, "-V").Output()
	if err != nil {
		t.Fatalf("curl -V: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if have, ok := strings.CutPrefix(line, "Features: "); ok {
			for _, f := range features {
				if !strings.Contains(" "+have+" ", " "+f+" ") {
					t.Skipf("this curl lacks %s (features: %s)", f, have)
				}
			}
			return curl
		}
	}
	t.Fatalf("curl -V lists no features:\n%s", out)
	return ""
}

// ntlmH2Client is ntlmClient with a transport that takes HTTP/2 when the
// gateway offers it, as browsers do.
func ntlmH2Client(roots *x509.CertPool, host, addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		},
		ForceAttemptHTTP2: true,
		MaxConnsPerHost:   1,
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: ntlmssp.Negotiator{RoundTripper: tr}}
}

// TestIISHTTP2FirstContact: a site whose IIS asks for Windows
// authentication at / never fails its first HTTP/2 client. The very first
// request after start, curl --http2 --ntlm, authenticates over HTTP/1.1:
// the gateway's probe found the challenge before the client came. After a
// restart on the same storage with IIS down, so that no probe can find it
// again, the site is still offered only HTTP/1.1, while a site whose home
// page is anonymous keeps HTTP/2 throughout, and so does a site with
// http2: on, whose challenges reach HTTP/2 clients as they are.
func TestIISHTTP2FirstContact(t *testing.T) {
	t.Parallel()
	curl := requireCurl(t, "HTTP2", "NTLM")
	intranet := newIISDouble(t, "iis01", "NTLM", nil)
	intranet.siteWide.Store(true)
	public := newIISDouble(t, "web01", "NTLM", nil) // anonymous at /, NTLM under /secure/
	cfg := newConfig(t, intranet.url, "intranet.test")
	cfg.HTTP.Sites = append(cfg.HTTP.Sites,
		gwSite{Hosts: []string{"public.test"}, Upstreams: []string{public.url}},
		gwSite{Hosts: []string{"h2.test"}, Upstreams: []string{intranet.url}, HTTP2: "on"})
	file := cfg.write(t)
	rootPEM := exportRoot(t, file)
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := testpki.MustPoolOf(t, rootPEM)

	g := startGateway(t, file)
	r := curlHTTP2(t, curl, rootFile, g.httpsAddr, "intranet.test", "/whoami", `CORP\alice`, intranet.users["alice"])
	if r.code != "200" || r.echo.User != `CORP\alice` || r.version != "1.1" {
		t.Fatalf("first request: %s over HTTP/%s as %q (%s); want 200 over HTTP/1.1 as CORP\\alice", r.code, r.version, r.echo.User, r.stderr)
	}
	// go-ntlmssp on a transport that would take h2 as well.
	c := ntlmH2Client(roots, "intranet.test", g.httpsAddr)
	req, err := http.NewRequest(http.MethodGet, httpsURL("intranet.test", g.httpsAddr, "/whoami"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(`CORP\bob`, intranet.users["bob"]) // go-ntlmssp turns it into NTLM
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e iisEcho
	_ = json.NewDecoder(res.Body).Decode(&e)
	_ = res.Body.Close()
	c.CloseIdleConnections()
	if res.StatusCode != http.StatusOK || e.User != `CORP\bob` || res.ProtoMajor != 1 {
		t.Errorf("go-ntlmssp: %d over %s as %q, want 200 over HTTP/1.1 as CORP\\bob", res.StatusCode, res.Proto, e.User)
	}
	if r := curlHTTP2(t, curl, rootFile, g.httpsAddr, "public.test", "/", "", ""); r.code != "200" || r.version != "2" {
		t.Errorf("public.test: %s over HTTP/%s, want 200 over HTTP/2 (its home page does not challenge)", r.code, r.version)
	}
	// http2: on. The challenge comes over HTTP/2 without a GOAWAY, and
	// stays so: the site is never moved. curl then moves to HTTP/1.1 by
	// itself ("Forcing HTTP/1.1 for NTLM") and authenticates there.
	for range 2 {
		if r := curlHTTP2(t, curl, rootFile, g.httpsAddr, "h2.test", "/", "", ""); r.code != "401" || r.version != "2" {
			t.Errorf("h2.test without credentials: %s over HTTP/%s, want the 401 over HTTP/2", r.code, r.version)
		}
	}
	if r := curlHTTP2(t, curl, rootFile, g.httpsAddr, "h2.test", "/whoami", `CORP\carol`, intranet.users["carol"]); r.code != "200" || r.echo.User != `CORP\carol` {
		t.Errorf("h2.test with curl --ntlm: %s over HTTP/%s as %q (%s), want 200 as CORP\\carol", r.code, r.version, r.echo.User, r.stderr)
	}
	g.stop(t)

	intranet.kill()
	public.kill()
	g = startGateway(t, file)
	for host, want := range map[string]string{"intranet.test": "1.1", "public.test": "2", "h2.test": "2"} {
		r := curlHTTP2(t, curl, rootFile, g.httpsAddr, host, "/", "", "")
		if r.code != "502" || r.version != want {
			t.Errorf("%s after the restart, IIS down: %s over HTTP/%s, want 502 over HTTP/%s", host, r.code, r.version, want)
		}
	}
}
