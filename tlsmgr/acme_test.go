package tlsmgr

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

func acmeConfig(ca string) configs.TLS {
	return configs.TLS{Issuer: configs.IssuerACME, MinVersion: "1.2", ACME: configs.ACME{CA: ca}}
}

func TestACMEWiring(t *testing.T) {
	tests := []struct {
		name      string
		cfg       configs.TLS
		protos    []string
		wantProto []string
		challenge bool // HTTPChallengeHandler wraps
	}{
		{"acme appends acme-tls/1", acmeConfig("https://127.0.0.1:1/dir"), []string{"h2", "http/1.1"}, []string{"h2", "http/1.1", "acme-tls/1"}, true},
		{"acme without protocols adds none", acmeConfig("https://127.0.0.1:1/dir"), nil, nil, true},
		{"tls-alpn disabled", func() configs.TLS {
			c := acmeConfig("https://127.0.0.1:1/dir")
			c.ACME.DisableTLSALPNChallenge = true
			return c
		}(), []string{"h2"}, []string{"h2"}, true},
		{"http-01 disabled", func() configs.TLS {
			c := acmeConfig("https://127.0.0.1:1/dir")
			c.ACME.DisableHTTPChallenge = true
			return c
		}(), []string{"h2"}, []string{"h2", "acme-tls/1"}, false},
		{"internal", internalConfig(), []string{"h2"}, []string{"h2"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, tc.cfg, t.TempDir())
			if got := m.ServerTLSConfig("app.test", tc.protos...).NextProtos; !slices.Equal(got, tc.wantProto) {
				t.Errorf("NextProtos = %v, want %v", got, tc.wantProto)
			}
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
			h := m.HTTPChallengeHandler(next)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/some/page", nil))
			if rec.Code != http.StatusTeapot {
				t.Errorf("ordinary request answered %d, want it passed to next", rec.Code)
			}
			if tc.challenge != (m.acme != nil && !tc.cfg.ACME.DisableHTTPChallenge) {
				t.Errorf("challenge handler wiring mismatch")
			}
		})
	}
}

func TestACMEConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "pebble-root.pem")
	cfg := acmeConfig("https://127.0.0.1:1/dir")
	cfg.ACME.CARoot = missing
	if _, err := New(cfg, t.TempDir(), zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("New error %v, want one naming %s", err, missing)
	}
	m := newManager(t, acmeConfig("https://127.0.0.1:1/dir"), t.TempDir())
	if err := m.SetChallengeAddresses("no-port", ""); err == nil {
		t.Error("SetChallengeAddresses accepted an address without a port")
	}
	if err := m.SetChallengeAddresses("127.0.0.1:8080", "[::1]:8443"); err != nil || m.acme.AltHTTPPort != 8080 || m.acme.AltTLSALPNPort != 8443 {
		t.Errorf("SetChallengeAddresses: %v, ports %d %d", err, m.acme.AltHTTPPort, m.acme.AltTLSALPNPort)
	}
}

// TestACMEPebble obtains certificates from a local pebble through each
// challenge, answered by the gateway's own listeners.
func TestACMEPebble(t *testing.T) {
	bin, err := exec.LookPath("pebble")
	if err != nil {
		t.Skip("pebble not on PATH")
	}
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			httpLn := listen(t)
			httpsLn := listen(t)
			p := startPebble(t, bin, portOfAddr(httpLn), portOfAddr(httpsLn))

			cfg := acmeConfig(p.dir)
			cfg.ACME.CARoot = p.caRootFile
			cfg.ACME.DisableHTTPChallenge = challenge != "http-01"
			cfg.ACME.DisableTLSALPNChallenge = challenge != "tls-alpn-01"
			// No e-mail: certmagic must not prompt on stdin (quietACME).
			m := newManager(t, cfg, t.TempDir())
			if err := m.SetChallengeAddresses(httpLn.Addr().String(), httpsLn.Addr().String()); err != nil {
				t.Fatal(err)
			}

			// Count the validation requests reaching the gateway's listeners,
			// to prove they (not a listener of certmagic's) answered.
			var answered atomic.Int32
			challengeHandler := m.HTTPChallengeHandler(http.NotFoundHandler())
			hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
					answered.Add(1)
				}
				challengeHandler.ServeHTTP(w, r)
			})}
			go func() { _ = hs.Serve(httpLn) }() // ends with hs.Close
			t.Cleanup(func() { hs.Close() })
			tlsCfg := m.ServerTLSConfig("localhost", "http/1.1")
			getCert := tlsCfg.GetCertificate
			tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if slices.Equal(hello.SupportedProtos, []string{"acme-tls/1"}) {
					answered.Add(1)
				}
				return getCert(hello)
			}
			tlsSrv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = tlsSrv.ServeTLS(httpsLn, "", "") }() // ends with tlsSrv.Close
			t.Cleanup(func() { tlsSrv.Close() })

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := m.Manage(ctx, []string{"localhost"}); err != nil {
				t.Fatalf("Manage: %v\npebble log:\n%s", err, p.log())
			}
			if answered.Load() == 0 {
				t.Errorf("no %s validation reached the gateway's listener", challenge)
			}
			cs, err := handshake(t, httpsLn.Addr().String(), &tls.Config{ServerName: "localhost", RootCAs: testpki.MustPoolOf(t, p.issuingRoot(t))})
			if err != nil {
				t.Fatalf("handshake with the ACME certificate: %v", err)
			}
			if got := cs.PeerCertificates[0].DNSNames; !slices.Contains(got, "localhost") {
				t.Errorf("served names %v", got)
			}
			info := m.Certificates()
			if len(info) != 1 || info[0].Issuer != string(configs.IssuerACME) || info[0].Source != p.dir {
				t.Errorf("Certificates() = %+v", info)
			}
		})
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOfAddr(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

type pebble struct {
	dir        string // ACME directory URL
	mgmt       string // management base URL
	caRootFile string // trusts pebble's HTTPS certificate
	client     *http.Client
	mu         sync.Mutex
	out        bytes.Buffer
}

func (p *pebble) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pebble) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// pebbleOpts are what some tests change in pebble's setup.
type pebbleOpts struct {
	dnsServer string            // -dnsserver: where pebble resolves names (DNS-01 records)
	eabKeys   map[string]string // key ID -> base64url MAC key; requires EAB when set
}

func startPebble(t *testing.T, bin string, httpPort, tlsPort int, opts ...pebbleOpts) *pebble {
	t.Helper()
	var o pebbleOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	dir := t.TempDir()
	ca := newTestCA(t, "Pebble HTTPS CA")
	l := ca.MustIssue(t, testpki.Options{}, "localhost", "127.0.0.1")
	listenPort, mgmtPort := testkit.MustFreePort(t), testkit.MustFreePort(t)
	conf := map[string]map[string]any{"pebble": {
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listenPort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             writeFile(t, filepath.Join(dir, "cert.pem"), l.CertPEM),
		"privateKey":              writeFile(t, filepath.Join(dir, "key.pem"), l.KeyPEM),
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"ocspResponderURL":        "",
	}}
	if o.eabKeys != nil {
		conf["pebble"]["externalAccountBindingRequired"] = true
		conf["pebble"]["externalAccountMACKeys"] = o.eabKeys
	}
	b, _ := json.Marshal(conf)
	p := &pebble{
		dir:        fmt.Sprintf("https://127.0.0.1:%d/dir", listenPort),
		mgmt:       fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		caRootFile: writeFile(t, filepath.Join(dir, "ca.PEM"), ca.PEM),
		client:     &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: testpki.MustPoolOf(t, ca.PEM)}}},
	}
	args := []string{"-config", writeFile(t, filepath.Join(dir, "pebble.json"), b)}
	if o.dnsServer != "" {
		args = append(args, "-dnsserver", o.dnsServer)
	}
	cmd := exec.Command(bin, args...)
	// No PEBBLE_VA_ALWAYS_VALID: every challenge is really validated.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // killed: the exit status says so
	})
	testkit.EventuallyTrue(t, "pebble to serve its directory", func() bool {
		resp, err := p.client.Get(p.dir)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// issuingRoot fetches the root pebble signs with (generated at its start).
func (p *pebble) issuingRoot(t *testing.T) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	return b
}
