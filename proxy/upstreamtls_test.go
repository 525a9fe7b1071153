package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gateway-project/gateway/configs"
)

// tlsBackend is an IIS with its own HTTPS binding: a certificate from ca
// for names, and a record of the server names clients asked for.
type tlsBackend struct {
	*httptest.Server
	mu  sync.Mutex
	sni []string
}

func newTLSBackend(t *testing.T, ca *testAuthority, names ...string) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello over "+r.Proto)
	}))
	cert := ca.issue(t, false, names...)
	b.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			b.mu.Lock()
			b.sni = append(b.sni, h.ServerName)
			b.mu.Unlock()
			return nil, nil
		},
	}
	b.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

func (b *tlsBackend) serverNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.sni...)
}

func TestUpstreamTLSSettings(t *testing.T) {
	ca, other := newAuthority(t, "IIS CA"), newAuthority(t, "Other CA")
	b := newTLSBackend(t, ca, "iis01.corp.local")
	leaf := b.TLS.Certificates[0].Certificate[0]
	sum := sha256.Sum256(leaf)
	pin := hex.EncodeToString(sum[:])

	tests := []struct {
		name     string
		tls      configs.SiteUpstreamTLS
		status   int
		wantLog  string // a log message that must appear
		wantKind string // error_kind of the failure
	}{
		{"ca and server name", configs.SiteUpstreamTLS{CAFile: ca.file(t), ServerName: "iis01.corp.local"}, http.StatusOK, "", ""},
		{"wrong ca", configs.SiteUpstreamTLS{CAFile: other.file(t), ServerName: "iis01.corp.local"}, http.StatusBadGateway, "upstream request failed", "tls"},
		{"wrong name", configs.SiteUpstreamTLS{CAFile: ca.file(t), ServerName: "iis02.corp.local"}, http.StatusBadGateway, "upstream request failed", "tls"},
		{"system roots", configs.SiteUpstreamTLS{ServerName: "iis01.corp.local"}, http.StatusBadGateway, "upstream request failed", "tls"},
		{"pin alone", configs.SiteUpstreamTLS{PinSHA256: pin}, http.StatusOK, "", ""},
		{"wrong pin", configs.SiteUpstreamTLS{PinSHA256: strings.Repeat("ab", 32)}, http.StatusBadGateway, "upstream request failed", "tls"},
		{"insecure", configs.SiteUpstreamTLS{InsecureSkipVerify: true}, http.StatusOK, "upstream certificate not verified", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := oneSite(b.URL)
			cfg.Sites[0].UpstreamTLS = tc.tls
			p := startProxy(t, cfg)
			resp, body := p.get(t, "", "/", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == http.StatusOK && body != "hello over HTTP/1.1" {
				t.Errorf("body %q: IIS must be reached over HTTP/1.1", body)
			}
			if tc.status == http.StatusBadGateway && body != bodyTLS {
				t.Errorf("body %q, want %q", body, bodyTLS)
			}
			if tc.wantLog != "" {
				e := p.logs.FilterMessage(tc.wantLog).All()
				if len(e) == 0 {
					t.Fatalf("no %q log entry", tc.wantLog)
				}
				if tc.wantKind != "" && e[0].ContextMap()["error_kind"] != tc.wantKind {
					t.Errorf("error_kind %v, want %s", e[0].ContextMap()["error_kind"], tc.wantKind)
				}
			}
		})
	}
}

func TestUpstreamTLSSNIFromHost(t *testing.T) {
	ca := newAuthority(t, "IIS CA")
	b := newTLSBackend(t, ca, "*.example.com")
	cfg := configs.HTTP{Sites: []configs.Site{{
		Hosts:        []string{"*.example.com"},
		Upstreams:    []string{b.URL},
		PreserveHost: true,
		UpstreamTLS:  configs.SiteUpstreamTLS{CAFile: ca.file(t), SNIFromHost: true},
	}}}
	p := startProxy(t, cfg)
	for _, host := range []string{"app.example.com", "billing.example.com", "app.example.com"} {
		if resp, body := p.get(t, host, "/", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("Host %s: %d %q", host, resp.StatusCode, body)
		}
	}
	// One connection per name, reused for the same name.
	if got := strings.Join(b.serverNames(), ","); got != "app.example.com,billing.example.com" {
		t.Errorf("upstream saw server names %q, want app.example.com,billing.example.com", got)
	}
}

func TestClientCertificates(t *testing.T) {
	clientCA, strangerCA := newAuthority(t, "Clinic users CA"), newAuthority(t, "Stranger CA")
	user := clientCA.issue(t, true, "dr.smith")
	stranger := strangerCA.issue(t, true, "mallory")
	b := echoBackend(t, "b")
	cfg := configs.HTTP{Sites: []configs.Site{
		{Hosts: []string{"app.example.com"}, Upstreams: []string{b.URL}},
		{Hosts: []string{"secure.example.com"}, Upstreams: []string{b.URL},
			ClientAuth: configs.ClientAuth{Mode: configs.ClientAuthRequired, CAFile: clientCA.file(t)}},
		{Hosts: []string{"optional.example.com"}, Upstreams: []string{b.URL},
			ClientAuth: configs.ClientAuth{Mode: configs.ClientAuthOptional, CAFile: clientCA.file(t)}},
	}}
	p := startProxy(t, cfg)
	wantHeader := base64.StdEncoding.EncodeToString(user.Leaf.Raw)

	client := func(sni string, cert *tls.Certificate) *http.Client {
		c := clientTLS()
		c.ServerName = sni
		if cert != nil {
			// Offered even when the server asks for other CAs (Go's
			// default would then send none), as a careless client would.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		tr := &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	request := func(c *http.Client, host string) (*http.Response, string, error) {
		req, _ := http.NewRequest(http.MethodGet, p.base+"/", nil)
		req.Host = host
		req.Header.Set("X-ARR-ClientCert", "c3Bvb2ZlZA==") // a forged certificate
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body), nil
	}

	tests := []struct {
		name       string
		sni, host  string
		cert       *tls.Certificate
		handshake  bool // false: the handshake must fail
		status     int
		wantHeader string
	}{
		{"required with certificate", "secure.example.com", "secure.example.com", &user, true, 200, wantHeader},
		{"required without", "secure.example.com", "secure.example.com", nil, false, 0, ""},
		{"required with a stranger's", "secure.example.com", "secure.example.com", &stranger, false, 0, ""},
		{"optional without", "optional.example.com", "optional.example.com", nil, true, 200, ""},
		{"optional with certificate", "optional.example.com", "optional.example.com", &user, true, 200, wantHeader},
		{"optional with a stranger's", "optional.example.com", "optional.example.com", &stranger, false, 0, ""},
		{"none strips the forged header", "app.example.com", "app.example.com", &user, true, 200, ""},
		{"other name's connection", "app.example.com", "secure.example.com", nil, true, http.StatusMisdirectedRequest, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := request(client(tc.sni, tc.cert), tc.host)
			if !tc.handshake {
				if err == nil {
					t.Fatalf("request succeeded (%d), want the handshake refused", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != http.StatusOK {
				return
			}
			e := decodeEcho(t, body)
			if got := e.Header.Get("X-Arr-Clientcert"); got != tc.wantHeader {
				t.Errorf("upstream saw X-ARR-ClientCert %q, want %q", got, tc.wantHeader)
			}
		})
	}
}
