package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// demoInfo is DIR/demo.json, the contract scripts and tests rely on
// (docs/architecture.md, "CLI contract").
type demoInfo struct {
	HTTPSURL       string `json:"https_url"`
	SQLAddr        string `json:"sql_addr"`
	SQLHostname    string `json:"sql_hostname"`
	SQLUser        string `json:"sql_user"`
	SQLPassword    string `json:"sql_password"`
	RootCA         string `json:"root_ca"`
	BackendHTTPURL string `json:"backend_http_url"`
	BackendSQLAddr string `json:"backend_sql_addr"`
	// AdminURL is the admin endpoint: the status page at /, /status.json.
	AdminURL string `json:"admin_url"`
	// Config is DIR/gateway.yaml, the configuration the demo runs, with the
	// addresses it bound, for `gateway audit --config` and `gateway check`.
	Config string `json:"config"`
	// AuditPasswordEnv names the variable `gateway audit` reads the demo
	// SQL Server's audit login password from; AuditPassword is its value.
	AuditPasswordEnv string `json:"audit_password_env"`
	AuditPassword    string `json:"audit_password"`
}

// demoAuditUser is the read-only login `gateway audit` uses on the demo's
// SQL Server, and demoAuditEnv the variable its password is read from.
const (
	demoAuditUser = "audit"
	demoAuditEnv  = "GATEWAY_DEMO_AUDIT_PASSWORD"
)

func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the gateway in front of built-in demo backends",
		Long: "demo starts a small web app and a test SQL Server (tdstest), and the gateway\n" +
			"in front of both with the internal CA: HTTPS for the app, and a TDS listener in\n" +
			"required mode whose upstream certificate is verified. It prints the URLs, the\n" +
			"root CA path and client commands that work, and writes DIR/demo.json once\n" +
			"ready. Ctrl-C stops everything.",
		Args: cobra.NoArgs,
		RunE: runDemo,
	}
	f := cmd.Flags()
	f.String("dir", "./demo-data", "directory for the demo's storage, root CA and demo.json")
	f.String("https-addr", "127.0.0.1:0", "HTTPS listen address (port 0: any free port)")
	f.String("sql-addr", "127.0.0.1:0", "SQL listen address (port 0: any free port)")
	f.String("admin-addr", "127.0.0.1:0", "admin endpoint address: status page, /status.json, /metrics (port 0: any free port)")
	f.String("log-level", "info", "log level: debug | info | warn | error")
	return cmd
}

func runDemo(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	dir, _ := cmd.Flags().GetString("dir")
	httpsAddr, _ := cmd.Flags().GetString("https-addr")
	sqlAddr, _ := cmd.Flags().GetString("sql-addr")
	adminAddr, _ := cmd.Flags().GetString("admin-addr")
	level, _ := cmd.Flags().GetString("log-level")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	dir, _ = filepath.Abs(dir)
	// A stale demo.json would tell a waiting script the demo is ready.
	_ = os.Remove(filepath.Join(dir, "demo.json"))

	logger, err := newLogger(configs.Log{Level: configs.LogLevel(level), Format: configs.LogConsole}, cmd.ErrOrStderr())
	if err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	defer func() { _ = logger.Sync() }()

	backend, err := startDemoBackend(logger.Named("demo_app"))
	if err != nil {
		return err
	}
	defer backend.Close()
	sqlBackend, err := startDemoSQL(dir, logger.Named("demo_sql"))
	if err != nil {
		return err
	}
	defer sqlBackend.Close()

	cfg, err := configs.Defaults()
	if err != nil {
		return err
	}
	cfg.Storage = filepath.Join(dir, "storage")
	cfg.Admin.Listen = adminAddr
	cfg.Log = configs.Log{Level: configs.LogLevel(level), Format: configs.LogConsole}
	cfg.DrainTimeout = 5 * time.Second
	cfg.HTTP.Listen = httpsAddr
	cfg.HTTP.RedirectListen = "127.0.0.1:0"
	cfg.HTTP.Sites = []configs.Site{{
		Hosts:        []string{"localhost", "127.0.0.1"},
		Upstreams:    []string{backend.URL},
		HSTSMaxAge:   time.Hour,
		PreserveHost: true,
	}}
	cfg.SQL = []configs.SQLListener{{
		Name:             "demo-sql",
		Listen:           sqlAddr,
		Hostname:         "localhost",
		ClientEncryption: configs.ClientEncryptionRequired,
		Upstream: configs.SQLUpstream{
			Address:    sqlBackend.server.Addr(),
			Encryption: configs.UpstreamEncryptionRequired,
			ServerName: "localhost",
			CAFile:     sqlBackend.caFile,
		},
		Audit: configs.SQLAudit{User: demoAuditUser, PasswordEnv: demoAuditEnv},
	}}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}

	g, err := lifecycle.Start(ctx, cfg, logger, lifecycle.Options{Version: version, Commit: vcsCommit()})
	if err != nil {
		return err
	}
	info, err := writeDemoFiles(dir, g, cfg, backend.URL, sqlBackend)
	if err != nil {
		_ = g.Drain()
		return err
	}
	printDemoHelp(cmd.OutOrStdout(), info, g)
	return g.Wait()
}

func writeDemoFiles(dir string, g *lifecycle.Gateway, cfg configs.Config, backendURL string, sqlBackend *demoSQL) (demoInfo, error) {
	addrs := g.Addrs()
	pem, err := g.Certs().RootPEM()
	if err != nil {
		return demoInfo{}, err
	}
	rootPath := filepath.Join(dir, "root-ca.pem")
	if err := os.WriteFile(rootPath, pem, 0o644); err != nil {
		return demoInfo{}, fmt.Errorf("writing root certificate: %w", err)
	}
	_, port, _ := net.SplitHostPort(addrs.HTTPS.String())
	info := demoInfo{
		HTTPSURL:         "https://localhost:" + port + "/",
		RootCA:           rootPath,
		BackendHTTPURL:   backendURL,
		SQLAddr:          addrs.SQL[addrs.SQLNames[0]],
		SQLHostname:      "localhost",
		SQLUser:          demoSQLUser,
		SQLPassword:      sqlBackend.password,
		BackendSQLAddr:   sqlBackend.server.Addr(),
		AdminURL:         "http://" + addrs.Admin.String() + "/",
		Config:           filepath.Join(dir, "gateway.yaml"),
		AuditPasswordEnv: demoAuditEnv,
		AuditPassword:    sqlBackend.auditPassword,
	}
	if err := os.WriteFile(info.Config, demoConfigYAML(cfg, g), 0o644); err != nil {
		return info, fmt.Errorf("writing gateway.yaml: %w", err)
	}
	// A FreeTDS configuration that demands encryption and verifies the
	// gateway's certificate against the demo root, for the printed tsql line.
	freetds := fmt.Sprintf("[global]\n\ttds version = 7.4\n\tencryption = require\n\tca file = %s\n", rootPath)
	if err := os.WriteFile(filepath.Join(dir, "freetds.conf"), []byte(freetds), 0o644); err != nil {
		return info, fmt.Errorf("writing freetds.conf: %w", err)
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, err
	}
	// Written last and renamed into place: its presence means "ready".
	tmp := filepath.Join(dir, ".demo.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return info, fmt.Errorf("writing demo.json: %w", err)
	}
	return info, os.Rename(tmp, filepath.Join(dir, "demo.json"))
}

func printDemoHelp(w io.Writer, info demoInfo, g *lifecycle.Gateway) {
	fmt.Fprintf(w, `
gateway demo is running. Ctrl-C stops it.

  HTTPS front:   %s  (-> demo app at %s)
  Root CA:       %s
  demo.json:     %s

Try it (the certificate is verified against the demo's own root CA):

  curl --cacert %s %s
  curl -sI --cacert %s %s | grep -i strict-transport

`, info.HTTPSURL, info.BackendHTTPURL, info.RootCA, filepath.Join(filepath.Dir(info.RootCA), "demo.json"),
		info.RootCA, info.HTTPSURL, info.RootCA, info.HTTPSURL)
	if a := g.Addrs().Redirect; a != nil {
		_, port, _ := net.SplitHostPort(a.String())
		fmt.Fprintf(w, "  curl -sI http://localhost:%s/some/path?x=1   # 308 to HTTPS\n\n", port)
	}
	_, sqlPort, _ := net.SplitHostPort(info.SQLAddr)
	dir := filepath.Dir(info.RootCA)
	fmt.Fprintf(w, `  SQL listener:  %s  (-> test SQL Server at %s, certificate verified)
  SQL login:     user %s, password %s

  # FreeTDS (apt install freetds-bin): encryption required, certificate checked
  printf 'SELECT @@VERSION\ngo\nexit\n' | FREETDSCONF=%s tsql -H localhost -p %s -U %s -P '%s'

  # go-mssqldb DSN (Go programs):
  sqlserver://%s:%s@localhost:%s?encrypt=true&certificate=%s

  # .NET / ODBC on Windows, once the root CA is trusted (README: "Trusting the internal CA"):
  Server=localhost,%s;User ID=%s;Password=%s;Encrypt=True;TrustServerCertificate=False

`, info.SQLAddr, info.BackendSQLAddr, info.SQLUser, info.SQLPassword,
		filepath.Join(dir, "freetds.conf"), sqlPort, info.SQLUser, info.SQLPassword,
		info.SQLUser, info.SQLPassword, sqlPort, info.RootCA,
		sqlPort, info.SQLUser, info.SQLPassword)
}

// demoConfigYAML is the configuration the demo runs, with the addresses it
// bound in place of its port-0 ones, so that `gateway audit --config` and
// `gateway check --config` find every listener.
func demoConfigYAML(cfg configs.Config, g *lifecycle.Gateway) []byte {
	site := cfg.HTTP.Sites[0]
	sql := cfg.SQL[0]
	addrs := g.Addrs()
	redirect := ""
	if a := addrs.Redirect; a != nil {
		redirect = a.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# The configuration `+"`gateway demo`"+` runs, with the addresses it bound.
# gateway audit --config %[1]s   (export %[2]s from demo.json first)
log: {level: %[3]s, format: console}
admin: {listen: %[4]q}
storage: %[5]q
drain_timeout: %[6]s
tls:
  issuer: internal
http:
  listen: %[7]q
  redirect_listen: %[8]q
  sites:
    - hosts: [%[9]s]
      upstreams: [%[10]q]
      hsts_max_age: %[11]s
      preserve_host: true
sql:
  - name: %[12]s
    listen: %[13]q
    hostname: %[14]s
    client_encryption: %[15]s
    upstream:
      address: %[16]q
      encryption: %[17]s
      server_name: %[18]s
      ca_file: %[19]q
    audit: {user: %[20]s, password_env: %[2]s}
`, "gateway.yaml", demoAuditEnv, cfg.Log.Level, addrs.Admin.String(), cfg.Storage, cfg.DrainTimeout,
		addrs.HTTPS.String(), redirect, strings.Join(site.Hosts, ", "), site.Upstreams[0], site.HSTSMaxAge,
		sql.Name, addrs.SQL[sql.Name], sql.Hostname, sql.ClientEncryption,
		sql.Upstream.Address, sql.Upstream.Encryption, sql.Upstream.ServerName, sql.Upstream.CAFile, demoAuditUser)
	return []byte(b.String())
}

// demoSQLUser is the SQL login of the demo's test SQL Server.
const demoSQLUser = "demo"

// demoSQL is the test SQL Server the demo puts behind the gateway: it forces
// encryption, like a hardened SQL Server, with its own certificate authority
// that the gateway is told to trust (upstream.ca_file).
type demoSQL struct {
	server        *tdstest.Server
	caFile        string
	password      string
	auditPassword string
}

func startDemoSQL(dir string, logger *zap.Logger) (*demoSQL, error) {
	// Valid for a year, as a real SQL Server's certificate would be.
	cert, rootPEM, err := tdstest.NewCertificateFor(365*24*time.Hour, "localhost", "127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("demo SQL server certificate: %w", err)
	}
	caFile := filepath.Join(dir, "backend-sql-ca.pem")
	if err := os.WriteFile(caFile, rootPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing demo SQL server CA: %w", err)
	}
	password, err := demoPassword("Demo-")
	if err != nil {
		return nil, err
	}
	auditPassword, err := demoPassword("Audit-")
	if err != nil {
		return nil, err
	}
	srv, err := tdstest.NewServer(tdstest.Config{
		Encryption:  tdstest.EncryptForced,
		Certificate: &cert,
		Users:       map[string]string{demoSQLUser: password, demoAuditUser: auditPassword},
		ServerName:  "demo-sql",
		// A hardened server: the application's database is encrypted at
		// rest (TDE), which `gateway audit` checks.
		Databases: []tdstest.DatabaseRow{{Name: "clinic", Encrypted: true}},
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("demo SQL server: %w", err)
	}
	return &demoSQL{server: srv, caFile: caFile, password: password, auditPassword: auditPassword}, nil
}

// demoPassword is a random password with prefix.
func demoPassword(prefix string) (string, error) {
	pw := make([]byte, 9)
	if _, err := rand.Read(pw); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(pw), nil
}

// Close stops the demo SQL server.
func (d *demoSQL) Close() { _ = d.server.Close() }

// demoBackend is the small web app the demo puts behind the gateway: it shows
// what the application sees of each request, as an IIS app would.
type demoBackend struct {
	URL string
	srv *http.Server
}

var demoPage = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><title>Demo app behind the gateway</title></head>
<body>
<h1>Hello from the demo app</h1>
<p>This app speaks plain HTTP; the gateway in front of it terminated TLS.</p>
<table>
<tr><td>Host</td><td>{{.Host}}</td></tr>
<tr><td>Path</td><td>{{.Path}}</td></tr>
<tr><td>X-Forwarded-Proto</td><td>{{.Proto}}</td></tr>
<tr><td>X-Forwarded-For</td><td>{{.For}}</td></tr>
<tr><td>X-Forwarded-Host</td><td>{{.FwdHost}}</td></tr>
</table>
</body></html>
`))

func startDemoBackend(logger *zap.Logger) (*demoBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo app: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = demoPage.Execute(w, map[string]string{
			"Host": r.Host, "Path": r.URL.Path,
			"Proto": r.Header.Get("X-Forwarded-Proto"), "For": r.Header.Get("X-Forwarded-For"),
			"FwdHost": r.Header.Get("X-Forwarded-Host"),
		})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("demo app stopped", zap.Error(err))
		}
	}()
	return &demoBackend{URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (b *demoBackend) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
}
