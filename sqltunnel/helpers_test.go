package sqltunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

const (
	gwHost     = "sql.gateway.test" // the name on the gateway's certificate
	testUser   = "app"
	testPass   = "Pa55-w0rd!secret" // must never appear in a log line
	testDB     = "master"
	waitLimit  = 10 * time.Second
	testAppStr = "sqltunnel-test"
)

// pki is the gateway's client-facing certificate and the root clients trust.
type pki struct {
	cert     tls.Certificate
	rootPEM  []byte
	rootFile string
	pool     *x509.CertPool
}

func newPKI(t *testing.T, hosts ...string) *pki {
	t.Helper()
	cert, root, err := tdstest.NewCertificate(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(file, root, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	return &pki{cert: cert, rootPEM: root, rootFile: file, pool: pool}
}

// serverTLS is a ServerTLS source serving p's certificate.
func (p *pki) serverTLS(nextProtos ...string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   nextProtos,
	}
}

// clientTLS is what a client trusting p uses.
func (p *pki) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: gwHost, MinVersion: tls.VersionTLS12}
}

// upstreamDouble starts a tdstest server with the test login and writes its
// root to a file for upstream.ca_file.
func upstreamDouble(t *testing.T, cfg tdstest.Config) (*tdstest.Server, string) {
	t.Helper()
	if cfg.Users == nil {
		cfg.Users = map[string]string{testUser: testPass}
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t).Named("tdstest")
	}
	srv, err := tdstest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	caFile := ""
	if root := srv.RootPEM(); root != nil {
		caFile = filepath.Join(t.TempDir(), "upstream-root.pem")
		if err := os.WriteFile(caFile, root, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return srv, caFile
}

// newLogSink returns a logger that records into the sink (and the test log).
func newLogSink(t *testing.T) (*zap.Logger, *logSink) {
	sink := &logSink{wake: make(chan struct{})}
	core, obs := observer.New(zapcore.DebugLevel)
	sink.obs = obs
	return zap.New(zapcore.NewTee(notifyCore{Core: core, sink: sink}, zaptest.NewLogger(t).Core())), sink
}

// logSink records log entries and wakes waiters on every new one.
type logSink struct {
	obs  *observer.ObservedLogs
	mu   sync.Mutex
	wake chan struct{}
}

type notifyCore struct {
	zapcore.Core
	sink *logSink
}

func (c notifyCore) With(f []zapcore.Field) zapcore.Core {
	return notifyCore{Core: c.Core.With(f), sink: c.sink}
}

func (c notifyCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c notifyCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	err := c.Core.Write(e, f)
	c.sink.mu.Lock()
	close(c.sink.wake)
	c.sink.wake = make(chan struct{})
	c.sink.mu.Unlock()
	return err
}

// wait returns the first entry that satisfies match, waiting for new entries
// (not polling) up to waitLimit.
func (s *logSink) wait(t *testing.T, what string, match func(observer.LoggedEntry) bool) observer.LoggedEntry {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		wake := s.wake
		s.mu.Unlock()
		for _, e := range s.obs.All() {
			if match(e) {
				return e
			}
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("no log entry %s within %v; have:\n%s", what, waitLimit, s.dump())
			return observer.LoggedEntry{}
		}
	}
}

// waitMsg waits for an entry with message msg whose fields include want.
func (s *logSink) waitMsg(t *testing.T, msg string, want map[string]any) observer.LoggedEntry {
	t.Helper()
	return s.wait(t, fmt.Sprintf("%q %v", msg, want), func(e observer.LoggedEntry) bool {
		if e.Message != msg {
			return false
		}
		ctx := e.ContextMap()
		for k, v := range want {
			if fmt.Sprint(ctx[k]) != fmt.Sprint(v) {
				return false
			}
		}
		return true
	})
}

func (s *logSink) dump() string {
	var b strings.Builder
	for _, e := range s.obs.All() {
		fmt.Fprintf(&b, "  %s %q %v\n", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}

// assertNoSecret fails if secret appears in any log entry.
func (s *logSink) assertNoSecret(t *testing.T, secret string) {
	t.Helper()
	for _, e := range s.obs.All() {
		if strings.Contains(e.Message, secret) || strings.Contains(fmt.Sprint(e.ContextMap()), secret) {
			t.Errorf("log entry %q contains a secret: %v", e.Message, e.ContextMap())
		}
	}
}

// gateway is a running Listener.
type gateway struct {
	l      *Listener
	addr   string
	port   int
	logs   *logSink
	pki    *pki
	cancel context.CancelFunc
	done   chan error
}

func listenerConfig(upstream, caFile string) configs.SQLListener {
	return configs.SQLListener{
		Name:             "crm",
		Listen:           "127.0.0.1:0",
		Hostname:         gwHost,
		ClientEncryption: configs.ClientEncryptionRequired,
		Upstream: configs.SQLUpstream{
			Address:    upstream,
			Encryption: configs.UpstreamEncryptionRequired,
			CAFile:     caFile,
		},
	}
}

// startGateway runs a Listener for cfg until the test ends.
func startGateway(t *testing.T, cfg configs.SQLListener, opts ...Option) *gateway {
	t.Helper()
	p := newPKI(t, gwHost, "127.0.0.1")
	logger, sink := newLogSink(t)
	l, err := New(cfg, p.serverTLS, logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{l: l, addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port, logs: sink, pki: p, cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return g
}

// stop ends Serve and returns its error; it is idempotent.
func (g *gateway) stop() error {
	g.cancel()
	err, ok := <-g.done
	if ok {
		close(g.done)
	}
	return err
}

// dsn is a go-mssqldb URL through the gateway.
func (g *gateway) dsn(user, pass string, params map[string]string) string {
	q := url.Values{}
	q.Set("database", testDB)
	q.Set("app name", testAppStr)
	q.Set("dial timeout", "5")
	q.Set("connection timeout", "10")
	q.Set("disableretry", "true")
	q.Set("certificate", g.pki.rootFile)
	q.Set("hostnameincertificate", gwHost)
	for k, v := range params {
		if v == "" {
			q.Del(k)
			continue
		}
		q.Set(k, v)
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(user, pass), Host: g.addr, RawQuery: q.Encode()}
	return u.String()
}

// open returns a go-mssqldb pool through the gateway with one connection.
func (g *gateway) open(t *testing.T, params map[string]string) *sql.DB {
	t.Helper()
	return openDSN(t, g.dsn(testUser, testPass, params), nil)
}

// openDSN opens dsn; tlsConf, when set, replaces the driver's TLS
// configuration (go-mssqldb builds none for encrypt=disable).
func openDSN(t *testing.T, dsn string, tlsConf *tls.Config) *sql.DB {
	t.Helper()
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		cfg.TLSConfig = tlsConf
	}
	db := sql.OpenDB(mssql.NewConnectorConfig(cfg))
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// selectOne runs SELECT 1 and returns the error.
func selectOne(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("SELECT 1 returned %d", n)
	}
	return nil
}

// sqlError extracts the server error number from a go-mssqldb error.
func sqlError(t *testing.T, err error) mssql.Error {
	t.Helper()
	var me mssql.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not an mssql.Error", err, err)
	}
	return me
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// noLogin asserts that no session of srv received a LOGIN7.
func noLogin(t *testing.T, srv *tdstest.Server) {
	t.Helper()
	for _, r := range srv.Sessions() {
		if r.LoginPackets != 0 || r.TDSVersion != 0 || r.User != "" {
			t.Errorf("upstream session %d received a LOGIN7 (%d packets, user %q)", r.ID, r.LoginPackets, r.User)
		}
	}
}

// rawClient speaks TDS by hand, for inputs no driver sends.
type rawClient struct {
	t    *testing.T
	conn net.Conn // the TCP connection
	tds  net.Conn // what carries TDS: conn or TLS over it
	r    *tds.Reader
	w    *tds.Writer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	rc := &rawClient{t: t, conn: c}
	rc.use(c)
	return rc
}

func (c *rawClient) use(conn net.Conn) {
	c.tds = conn
	c.r = tds.NewReader(conn)
	_ = c.r.SetMaxPacketSize(tds.MaxPacketSize)
	c.r.SetMaxMessageSize(8 << 20)
	c.w = tds.NewWriter(conn)
}

func (c *rawClient) send(typ tds.PacketType, payload []byte) error {
	return c.w.WriteMessage(tds.Message{Type: typ, Status: tds.StatusEOM, Payload: payload})
}

// prelogin sends a PRELOGIN and returns the answer.
func (c *rawClient) prelogin(p *tds.Prelogin) *tds.Prelogin {
	c.t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.send(tds.PacketPrelogin, b); err != nil {
		c.t.Fatal(err)
	}
	m, err := c.r.ReadMessage(nil)
	if err != nil {
		c.t.Fatalf("reading the PRELOGIN answer: %v", err)
	}
	a, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

func (c *rawClient) login7(user, pass string, packetSize uint32) []byte {
	c.t.Helper()
	b := tds.Login7Builder{UserName: user, Password: pass, Database: testDB, AppName: testAppStr, HostName: "rawhost", Library: "rawclient", PacketSize: packetSize}
	payload, err := b.Build()
	if err != nil {
		c.t.Fatal(err)
	}
	return payload
}

// expectClosed asserts the gateway closes the connection without sending a
// reply message.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	buf := make([]byte, 512)
	n, err := c.tds.Read(buf)
	if err == nil {
		c.t.Fatalf("connection still open; read %d bytes: % x", n, buf[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection not closed within %v", waitLimit)
	}
}

// replyTokens reads a reply message and scans it.
func (c *rawClient) replyTokens(ver tds.TDSVersion) []tds.Token {
	c.t.Helper()
	m, err := c.r.ReadMessage(nil)
	if err != nil {
		c.t.Fatalf("reading the reply: %v", err)
	}
	if m.Type != tds.PacketReply {
		c.t.Fatalf("reply is a %s message", m.Type)
	}
	var toks []tds.Token
	sc := tds.NewTokenScanner(m.Payload, ver)
	for sc.Scan() {
		tok := sc.Token()
		tok.Raw = append([]byte(nil), tok.Raw...)
		toks = append(toks, tok)
	}
	if err := sc.Err(); err != nil {
		c.t.Fatalf("scanning the reply: %v", err)
	}
	return toks
}

func findError(toks []tds.Token) *tds.ErrorInfo {
	for _, tok := range toks {
		if tok.Type == tds.TokenError {
			e, err := tds.ParseErrorInfo(tok.Raw)
			if err == nil {
				return &e
			}
		}
	}
	return nil
}

func hasToken(toks []tds.Token, typ tds.TokenType) bool {
	for _, tok := range toks {
		if tok.Type == typ {
			return true
		}
	}
	return false
}
