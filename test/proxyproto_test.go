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
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"
)

// Behind a TCP load balancer: HAProxy (Debian's) in TCP mode sends the
// PROXY protocol v2 to two gateways, from its own source address
// (balancerAddr), which is the only one the gateways trust. Clients pick
// their own loopback source address, so the tests can tell them apart.
const (
	balancerAddr = "127.0.0.5"
	clientAddr   = "127.0.0.9"
)

// startHAProxy runs haproxy in the foreground with cfg and waits until
// every address in listen accepts connections.
func startHAProxy(t *testing.T, cfg string, listen ...string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	requireClient(t, err, "the Debian package haproxy")
	file := writeFile(t, t.TempDir(), "haproxy.cfg", []byte(cfg))
	startProc(t, procSpec{name: "haproxy", bin: bin, args: []string{"-db", "-f", file}})
	for _, a := range listen {
		testkit.Eventually(t, 20*time.Second, "haproxy listening on "+a, func() error {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				_ = c.Close()
			}
			return err
		})
	}
}

// TestProxyProtocolHAProxy: through HAProxy with send-proxy-v2, the access
// log, X-Forwarded-For and the "sql login" line name the real client, on
// each of the two gateways; a PROXY header forged by a client that is not
// the balancer is refused, and so is a connection from the balancer's
// address without one.
func TestProxyProtocolHAProxy(t *testing.T) {
	t.Parallel()
	backend := newEchoBackend(t, nil)
	b := newOpsSQLBackend(t)
	pp := &gwProxyProtocol{Enabled: true, Trusted: []string{balancerAddr + "/32"}}
	var gws []*opsGateway
	for range 2 {
		cfg := opsConfig(t, opsSite{host: sqlHost, backend: backend.URL})
		cfg.HTTP.ProxyProtocol = pp
		s := opsSQL("crm", b)
		s.ProxyProtocol = pp
		cfg.SQL = []gwSQL{s}
		gws = append(gws, startOpsGateway(t, cfg))
	}
	httpsFront := "127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t))
	sqlFront := "127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t))
	var hs, ss strings.Builder
	for i, g := range gws {
		fmt.Fprintf(&hs, "    server g%d %s send-proxy-v2 source %s\n", i+1, g.httpsAddr, balancerAddr)
		fmt.Fprintf(&ss, "    server g%d %s send-proxy-v2 source %s\n", i+1, g.sqlAddrs["crm"], balancerAddr)
	}
	startHAProxy(t, fmt.Sprintf(`global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend https
    bind %s
    default_backend gateways_https
backend gateways_https
    balance roundrobin
%sfrontend sql
    bind %s
    default_backend gateways_sql
backend gateways_sql
    balance roundrobin
%s`, httpsFront, hs.String(), sqlFront, ss.String()), httpsFront, sqlFront)

	// Four requests and four logins: round robin reaches both gateways.
	root := testpki.MustPoolOf(t, mustRead(t, gws[0].rootFile))
	root.AppendCertsFromPEM(mustRead(t, gws[1].rootFile))
	fromClient := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientAddr)}, Timeout: 10 * time.Second}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: root, ServerName: sqlHost},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return fromClient.DialContext(ctx, "tcp", httpsFront)
		},
		DisableKeepAlives: true,
	}}
	for range 4 {
		_, got := getEcho(t, client, "https://"+sqlHost+"/pp", sqlHost)
		if got.ForwardedFor != clientAddr {
			t.Errorf("X-Forwarded-For %q, want the client's %s", got.ForwardedFor, clientAddr)
		}
		cfg, err := msdsn.Parse(mssqlDSN(sqlFront, verifiedParams("true", gws[0].rootFile)))
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig = &tls.Config{RootCAs: root, ServerName: sqlHost}
		conn := mssql.NewConnectorConfig(cfg)
		conn.Dialer = fromClient
		db := sql.OpenDB(conn)
		if err := db.PingContext(sqlCtx(t)); err != nil {
			t.Fatalf("login through HAProxy: %v", err)
		}
		_ = db.Close()
	}
	for i, g := range gws {
		e := g.waitLog(t, 30*time.Second, "an access line", func(_ string, e logEntry) bool {
			return e.str("msg") == "request" && e.str("path") == "/pp"
		})
		if r := e.str("remote"); !strings.HasPrefix(r, clientAddr+":") {
			t.Errorf("gateway %d access line: remote %q, want the client %s", i+1, r, clientAddr)
		}
		l := g.waitLog(t, 30*time.Second, "a sql login line", msgIs("sql login"))
		if r := l.str("remote"); !strings.HasPrefix(r, clientAddr+":") || l.str("outcome") != "ok" {
			t.Errorf("gateway %d sql login: remote %q outcome %q, want the client %s", i+1, r, l.str("outcome"), clientAddr)
		}
	}

	// A client that is not the balancer forges a header: closed, logged.
	g := gws[0]
	for _, addr := range []string{g.httpsAddr, g.sqlAddrs["crm"]} {
		c, err := fromClient.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "PROXY TCP4 203.0.113.7 127.0.0.1 4444 443\r\n")
		assertClosed(t, c)
	}
	g.waitLog(t, 30*time.Second, "the forged header refused", func(_ string, e logEntry) bool {
		return e.str("msg") == "proxy protocol header from an untrusted address; closing" && strings.HasPrefix(e.str("peer"), clientAddr+":")
	})
	// The balancer's address without a header: refused too.
	fromBalancer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(balancerAddr)}, Timeout: 10 * time.Second}
	c, err := fromBalancer.Dial("tcp", g.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: root, ServerName: sqlHost})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Error("a connection from the balancer without a PROXY header completed a TLS handshake")
	}
	_ = c.Close()
	g.waitLog(t, 30*time.Second, "the missing header refused", msgIs("connection from a trusted load balancer without a proxy protocol header; closing"))
}

// assertClosed reads from c until the gateway closes it, failing if it
// answers anything or keeps it open.
func assertClosed(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the gateway kept a connection with a forged header open")
	}
	if len(b) > 0 {
		t.Errorf("the gateway answered a forged header with %q", b)
	}
}
