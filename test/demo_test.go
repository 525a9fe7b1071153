package test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

// demoInfo is DIR/demo.json as `gateway demo` writes it (docs/architecture.md,
// "CLI contract").
type demoInfo struct {
	HTTPSURL       string `json:"https_url"`
	SQLAddr        string `json:"sql_addr"`
	SQLHostname    string `json:"sql_hostname"`
	SQLUser        string `json:"sql_user"`
	SQLPassword    string `json:"sql_password"`
	RootCA         string `json:"root_ca"`
	BackendHTTPURL string `json:"backend_http_url"`
	BackendSQLAddr string `json:"backend_sql_addr"`
	AdminURL       string `json:"admin_url"`
	Config         string `json:"config"`
	// The audit login of the demo's SQL Server (TestAuditDemo).
	AuditPasswordEnv string `json:"audit_password_env"`
	AuditPassword    string `json:"audit_password"`
}

// startDemo runs `gateway demo` in a fresh folder and returns it once
// demo.json is written, with what it says.
func startDemo(t *testing.T) (*proc, demoInfo) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	p := startProc(t, procSpec{name: "gateway demo", bin: gatewayBin, args: []string{"demo", "--dir", dir}})
	var info demoInfo
	testkit.Eventually(t, 60*time.Second, "demo.json written", func() error {
		if p.exited() {
			t.Fatalf("gateway demo exited (%v) before writing demo.json", p.state)
		}
		data, err := os.ReadFile(filepath.Join(dir, "demo.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &info)
	})
	return p, info
}

// TestDemo runs `gateway demo`, waits for demo.json, fetches the demo page
// as curl --cacert would, and stops the demo with SIGINT.
func TestDemo(t *testing.T) {
	t.Parallel()
	p, info := startDemo(t)
	u, err := url.Parse(info.HTTPSURL)
	if err != nil || u.Scheme != "https" || u.Port() == "" {
		t.Fatalf("demo.json https_url %q is not an https URL with a port", info.HTTPSURL)
	}
	rootPEM, err := os.ReadFile(info.RootCA)
	if err != nil {
		t.Fatalf("demo.json root_ca: %v", err)
	}

	// The demo listens on 127.0.0.1; dial it there whatever localhost resolves to.
	client := httpsClient(testpki.MustPoolOf(t, rootPEM), u.Hostname(), net.JoinHostPort("127.0.0.1", u.Port()))
	resp, err := client.Get(info.HTTPSURL)
	if err != nil {
		t.Fatalf("GET %s trusting only %s: %v", info.HTTPSURL, info.RootCA, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", info.HTTPSURL, resp.Status)
	}
	for _, want := range []string{"Hello from the demo app", "<td>X-Forwarded-Proto</td><td>https</td>"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("demo page lacks %q:\n%s", want, body)
		}
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("demo page has no Strict-Transport-Security header")
	}
	if !strings.HasPrefix(info.BackendHTTPURL, "http://127.0.0.1:") {
		t.Errorf("demo.json backend_http_url %q is not on 127.0.0.1", info.BackendHTTPURL)
	}
	if !strings.Contains(p.stdout.String(), "curl --cacert "+info.RootCA) {
		t.Errorf("the demo does not print a curl command using its root:\n%s", p.stdout.String())
	}

	p.signal(t, syscall.SIGINT)
	if code := p.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("gateway demo exited %d after SIGINT, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", u.Port()), time.Second); err == nil {
		t.Errorf("port %s still accepts connections after the demo exited", u.Port())
	}
}
