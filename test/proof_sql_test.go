package test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// SQL helpers of the proof suite. They are separate from the SQL e2e
// suite's (sql_*_test.go) on purpose: the proofs need keys that suite does
// not write (max_connections, strict upstreams, an HTTPS front beside the
// SQL listener) and doubles they can kill and restart on the same port.

const (
	proofSQLUser = "proof"
	// proofSQLPassword is searched for on the wire and in the logs; it is
	// distinctive and needs URL escaping.
	proofSQLPassword = "Pr00f;Wire-S3cret!Kq7"
	// proofSQLHost is the name on the gateway's SQL certificate.
	proofSQLHost = "sql.proof.test"
	// proofQuery is the statement the proofs run; the double answers any
	// INT literal and no TLS record contains its UTF-16LE text by chance.
	proofQuery = "SELECT 918273645"
)

// The proofs write the same SQL configuration as the SQL end-to-end tests
// (sql_harness_test.go).
type (
	proofConfig      = gwSQLConfig
	proofSQL         = gwSQL
	proofSQLUpstream = gwSQLUpstream
)

// newProofSQLConfig is a SQL-only gateway: one listener on a free port for
// proofSQLHost with client_encryption policy, in front of upstream
// (encryption required, verified against caFile for "localhost").
func newProofSQLConfig(t *testing.T, policy, upstream, caFile string) *proofConfig {
	t.Helper()
	return &proofConfig{
		gwConfig: gwConfig{
			Log:          gwLog{Level: "info", Format: "json"},
			Storage:      filepath.Join(t.TempDir(), "storage"),
			DrainTimeout: "10s",
			TLS:          gwTLS{Issuer: "internal"},
			HTTP:         gwHTTP{Listen: ""},
		},
		SQL: []proofSQL{{
			Name:             "proof",
			Listen:           "127.0.0.1:0",
			Hostname:         proofSQLHost,
			ClientEncryption: policy,
			Upstream:         proofSQLUpstream{Address: upstream, Encryption: "required", ServerName: "localhost", CAFile: caFile},
		}},
	}
}

// proofGateway is a running gateway with its exported root.
type proofGateway struct {
	*proc
	sqlAddr   string
	httpsAddr string
	adminAddr string // "" when admin.listen is ""
	rootPEM   []byte
	rootFile  string
}

// startProofGateway writes cfg, exports the internal root and runs the
// gateway until "gateway ready".
func startProofGateway(t *testing.T, cfg any, env ...string) *proofGateway {
	t.Helper()
	var file string
	switch c := cfg.(type) {
	case *proofConfig:
		file = c.write(t)
	case *gwConfig:
		file = c.write(t)
	default:
		t.Fatalf("config type %T", cfg)
	}
	root := exportRoot(t, file)
	p := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}, env: env})
	ready := p.waitLog(t, 60*time.Second, `"gateway ready"`, msgIs("gateway ready"))
	return &proofGateway{proc: p, sqlAddr: ready.str("sql_addr"), httpsAddr: ready.str("https_addr"), adminAddr: ready.str("admin_addr"),
		rootPEM: root, rootFile: writeFile(t, t.TempDir(), "gateway-root.pem", root)}
}

// proofGoroutines reads go_goroutines from the admin endpoint's /metrics
// (client_golang's Go collector); ok is false without an admin endpoint.
func proofGoroutines(t *testing.T, g *proofGateway) (n int, ok bool) {
	t.Helper()
	if g.adminAddr == "" {
		return 0, false
	}
	// No keep-alive: an idle scrape connection would hold a goroutine.
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + g.adminAddr + "/metrics")
	if err != nil {
		t.Fatalf("admin /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, found := strings.CutPrefix(line, "go_goroutines "); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("go_goroutines %q: %v", v, err)
			}
			return int(f), true
		}
	}
	t.Fatalf("admin /metrics has no go_goroutines:\n%s", body)
	return 0, false
}

// proofFDs counts the gateway process's open file descriptors (Linux /proc):
// every client and upstream connection holds one, so a leaked connection
// shows here. The binary has no pprof, and the goroutine count is not
// exported; descriptors are what a leak exhausts first.
func proofFDs(t *testing.T, p *proc) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(entries)
}

// proofThreads reads Threads from /proc/PID/status (for the report only: the Go
// runtime keeps idle threads).
func proofThreads(p *proc) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// proofSQLBackend is a tdstest double that can be killed and restarted on
// the same port with the same (or another) certificate.
type proofSQLBackend struct {
	t      *testing.T
	cfg    tdstest.Config
	srv    *tdstest.Server
	caFile string
}

// newProofSQLBackend starts a double forcing encryption, with a
// certificate for localhost from a throwaway CA (written to caFile) and the
// proof login.
func newProofSQLBackend(t *testing.T, cfg tdstest.Config) *proofSQLBackend {
	t.Helper()
	registerSecret(proofSQLPassword)
	b := &proofSQLBackend{t: t, cfg: cfg}
	if b.cfg.Certificate == nil {
		cert, root, err := tdstest.NewCertificate("localhost", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		b.cfg.Certificate = &cert
		b.caFile = writeFile(t, t.TempDir(), "backend-ca.pem", root)
	}
	if b.cfg.Users == nil {
		b.cfg.Users = map[string]string{proofSQLUser: proofSQLPassword}
	}
	b.start(t)
	return b
}

func (b *proofSQLBackend) start(t *testing.T) {
	t.Helper()
	srv, err := tdstest.NewServer(b.cfg)
	if err != nil {
		t.Fatalf("starting the SQL double on %q: %v", b.cfg.Addr, err)
	}
	b.srv = srv
	b.cfg.Addr = srv.Addr() // a restart takes the same port
	t.Cleanup(func() { _ = srv.Close() })
}

// kill closes the double and every connection, as a crashed server.
func (b *proofSQLBackend) kill() { _ = b.srv.Close() }

// restart serves again on the same address, with cert if not nil.
func (b *proofSQLBackend) restart(t *testing.T, cert *tls.Certificate) {
	t.Helper()
	if cert != nil {
		b.cfg.Certificate = cert
	}
	b.start(t)
}

func (b *proofSQLBackend) addr() string { return b.cfg.Addr }

// proofDSN is a go-mssqldb URL to addr verifying proofSQLHost against
// rootFile, with encrypt (disable | false | true | strict).
func proofDSN(addr, rootFile, encrypt string) string {
	q := url.Values{}
	q.Set("database", "master")
	q.Set("app name", "proof")
	q.Set("encrypt", encrypt)
	q.Set("certificate", rootFile)
	q.Set("hostnameincertificate", proofSQLHost)
	q.Set("dial timeout", "20")
	q.Set("connection timeout", "60")
	q.Set("disableretry", "true")
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(proofSQLUser, proofSQLPassword), Host: addr, RawQuery: q.Encode()}
	return u.String()
}

// proofOpen opens a pool of at most one connection.
func proofOpen(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(mssql.NewConnectorConfig(cfg))
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// proofSelect runs proofQuery once on a fresh connection and closes it.
func proofSelect(ctx context.Context, t *testing.T, dsn string) error {
	t.Helper()
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(mssql.NewConnectorConfig(cfg))
	db.SetMaxOpenConns(1)
	defer db.Close()
	var n int64
	if err := db.QueryRowContext(ctx, proofQuery).Scan(&n); err != nil {
		return err
	}
	if n != 918273645 {
		return fmt.Errorf("%s returned %d", proofQuery, n)
	}
	return nil
}

// proofCtx bounds a step generously: two cores shared with other runs.
func proofCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// proofErrorNumber is the server error number in err, or 0.
func proofErrorNumber(err error) int32 {
	var me mssql.Error
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// proofDialTCP connects to addr with a deadline for the whole exchange.
func proofDialTCP(t *testing.T, addr string, d time.Duration) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	return c.(*net.TCPConn)
}
