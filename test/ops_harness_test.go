package test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The operations tests (ops_*_test.go) run the real binary with its admin
// endpoint on a free loopback port and check what an operator sees: the
// metrics, readiness and certificate report, SIGHUP reloads and the drain.
// They reuse the SQL harness (sql_harness_test.go) for the tdstest double
// and the go-mssqldb client.

// opsGateway is a running gateway with its admin endpoint.
type opsGateway struct {
	*proc
	file      string            // the configuration file, rewritten by reloads
	httpsAddr string            // "" without an HTTPS front
	adminURL  string            // http://127.0.0.1:PORT
	sqlAddrs  map[string]string // listener name -> address, from "gateway ready"
	rootFile  string            // the internal CA root (PEM file)
}

// opsSite is a site served by a named backend, which answers every request
// with its name, so that a test sees which site served it.
type opsSite struct {
	host    string
	backend string // URL
}

// namedBackend starts a backend whose every answer is "name path".
func namedBackend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// opsConfig is a configuration with an admin endpoint on a free port, the
// sites given, and no SQL listener (tests add them).
func opsConfig(t *testing.T, sites ...opsSite) *gwSQLConfig {
	t.Helper()
	cfg := &gwSQLConfig{gwConfig: gwConfig{
		Log:          gwLog{Level: "info", Format: "json"},
		Admin:        gwAdmin{Listen: "127.0.0.1:0"},
		Storage:      filepath.Join(t.TempDir(), "storage"),
		DrainTimeout: "30s",
		TLS:          gwTLS{Issuer: "internal"},
		HTTP:         gwHTTP{Listen: "127.0.0.1:0"},
	}}
	for _, s := range sites {
		cfg.HTTP.Sites = append(cfg.HTTP.Sites, gwSite{Hosts: []string{s.host}, Upstreams: []string{s.backend}})
	}
	return cfg
}

// opsSQL is a SQL listener named name on a free port in front of b.
func opsSQL(name string, b *sqlBackend) gwSQL {
	return gwSQL{
		Name:             name,
		Listen:           "127.0.0.1:0",
		Hostname:         sqlHost,
		ClientEncryption: "required",
		Upstream:         gwSQLUpstream{Address: b.srv.Addr(), Encryption: "required", ServerName: sqlHost, CAFile: b.caFile},
	}
}

// writeConfigTo saves cfg as path (JSON is YAML), replacing the file
// atomically so that a reload never reads half of it.
func writeConfigTo(t *testing.T, path string, cfg any) {
	t.Helper()
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startOpsGateway writes cfg, exports the internal root, starts `gateway
// run` with env added, and waits for "gateway ready".
func startOpsGateway(t *testing.T, cfg *gwSQLConfig, env ...string) *opsGateway {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	writeConfigTo(t, file, cfg)
	g := &opsGateway{file: file, rootFile: writeFile(t, t.TempDir(), "root.pem", exportRoot(t, file, env...))}
	g.proc = startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}, env: env})
	ready := g.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))
	g.httpsAddr = ready.str("https_addr")
	admin := ready.str("admin_addr")
	if !strings.HasPrefix(admin, "127.0.0.1:") {
		t.Fatalf("gateway ready: admin_addr %q, want 127.0.0.1:PORT", admin)
	}
	g.adminURL = "http://" + admin
	g.sqlAddrs = stringMap(ready["sql_listeners"])
	return g
}

// stringMap converts a decoded JSON object of strings.
func stringMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			if s, ok := x.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}

// reload rewrites the configuration, sends SIGHUP and returns the line
// that answers it: "config reloaded" or "config reload failed".
func (g *opsGateway) reload(t *testing.T, cfg any) logEntry {
	t.Helper()
	writeConfigTo(t, g.file, cfg)
	mark := g.mark()
	g.signal(t, syscall.SIGHUP)
	return g.waitLogAfter(t, mark, 2*time.Minute, "the answer to SIGHUP", func(_ string, e logEntry) bool {
		m := e.str("msg")
		return m == "config reloaded" || m == "config reload failed; keeping the running configuration"
	})
}

// adminGet fetches an admin path and returns the status and body.
func (g *opsGateway) adminGet(t *testing.T, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get(g.adminURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// metrics is one scrape of /metrics: series (name and labels as printed)
// to value.
type metrics map[string]float64

// scrape fetches /metrics and parses the text format.
func (g *opsGateway) scrape(t *testing.T) metrics {
	t.Helper()
	code, body := g.adminGet(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("/metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: value of %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// series is the key of a series in the text format: labels sorted by name,
// as client_golang prints them.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// get returns a series' value, 0 when absent.
func (m metrics) get(name string, labels ...string) float64 { return m[series(name, labels...)] }

// has reports whether the series is present.
func (m metrics) has(name string, labels ...string) bool {
	_, ok := m[series(name, labels...)]
	return ok
}

// sum adds every series of a family whose labels include all of labels.
func (m metrics) sum(name string, labels ...string) float64 {
	total := 0.0
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(k, fmt.Sprintf("%s=%q", labels[i], labels[i+1])) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// waitMetric polls /metrics until cond holds for the value of a series.
func (g *opsGateway) waitMetric(t *testing.T, what string, cond func(metrics) error) metrics {
	t.Helper()
	var last metrics
	testkit.Eventually(t, 30*time.Second, what, func() error {
		last = g.scrape(t)
		return cond(last)
	})
	return last
}

// readyz returns /readyz's status and body.
func (g *opsGateway) readyz(t *testing.T) (int, string) { return g.adminGet(t, "/readyz") }

// certsReport is the body of /certs.
type certsReport struct {
	Certificates []struct {
		Names       []string  `json:"names"`
		Issuer      string    `json:"issuer"`
		Source      string    `json:"source"`
		NotAfter    time.Time `json:"not_after"`
		SHA256      string    `json:"sha256"`
		LastRenewal *struct {
			Operation string `json:"operation"`
			Result    string `json:"result"`
			Error     string `json:"error"`
		} `json:"last_renewal"`
	} `json:"certificates"`
	Missing []string `json:"missing"`
}

func (g *opsGateway) certs(t *testing.T) certsReport {
	t.Helper()
	code, body := g.adminGet(t, "/certs")
	if code != http.StatusOK {
		t.Fatalf("/certs: status %d: %s", code, body)
	}
	var r certsReport
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/certs is not the JSON report: %v\n%s", err, body)
	}
	return r
}

// opsClient is an HTTPS client for host through the gateway, trusting its
// internal root.
func (g *opsGateway) opsClient(t *testing.T, host string, keepAlive bool) *http.Client {
	t.Helper()
	data, err := os.ReadFile(g.rootFile)
	if err != nil {
		t.Fatal(err)
	}
	c := httpsClient(testpki.MustPoolOf(t, data), host, g.httpsAddr)
	c.Transport.(*http.Transport).DisableKeepAlives = !keepAlive
	return c
}

// fetch GETs path on host and returns the status and body, or an error.
func (g *opsGateway) fetch(c *http.Client, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, httpsURL(host, g.httpsAddr, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// mustFetch is fetch failing the test on anything but 200.
func (g *opsGateway) mustFetch(t *testing.T, c *http.Client, host, path string) string {
	t.Helper()
	code, body, err := g.fetch(c, host, path)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET https://%s%s: status %d, error %v, body %q", host, path, code, err, body)
	}
	return body
}

// sqlDB is a go-mssqldb pool to a listener of the gateway, verifying the
// gateway's certificate against its internal root.
func (g *opsGateway) sqlDB(t *testing.T, addr string) *sql.DB {
	t.Helper()
	return openMSSQL(t, mssqlDSN(addr, verifiedParams("true", g.rootFile)))
}

// sqlSelect runs SELECT n on conn and checks the answer.
func sqlSelect(ctx context.Context, conn *sql.Conn, n int64) error {
	var got int64
	if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", n)).Scan(&got); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("SELECT %d returned %d", n, got)
	}
	return nil
}

// newOpsSQLBackend is a double forcing encryption, as a hardened SQL Server.
func newOpsSQLBackend(t *testing.T) *sqlBackend {
	t.Helper()
	return newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
}

// refused reports whether nothing accepts connections on addr any more.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	}
	return nil
}

// fakeNotifySocket is systemd's side of sd_notify: a unixgram socket whose
// path goes into NOTIFY_SOCKET, and a function returning the next message.
func fakeNotifySocket(t *testing.T) (path string, next func() string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("sd_notify is for systemd on Linux")
	}
	// Unix socket paths are short (108 bytes): t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "gw-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path = filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, _, err := c.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		return string(buf[:n])
	}
}

// stop sends SIGTERM and expects a clean exit.
func (g *opsGateway) stop(t *testing.T) {
	t.Helper()
	g.signal(t, syscall.SIGTERM)
	if code := g.waitExit(t, 60*time.Second); code != 0 {
		t.Fatalf("gateway exited %d after SIGTERM, want 0", code)
	}
}
