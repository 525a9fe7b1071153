package sqltunnel

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// routedPair is a double whose logins are routed to a second double, both
// serving certificates of one CA (caFile), as an availability group's
// replicas or Azure SQL's gateway and nodes do.
type routedPair struct {
	first, second *tdstest.Server
	caFile        string
}

// startRoutedPair starts the second double, then the first routing every
// login to routeTo (the second's address when routeTo is nil).
func startRoutedPair(t *testing.T, routeTo func(second *tdstest.Server) tds.Routing) routedPair {
	t.Helper()
	cert, root, err := tdstest.NewCertificate("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ag-root.pem")
	if err := os.WriteFile(caFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	second, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert, ServerName: "replica"})
	rt := tds.Routing{Server: "127.0.0.1", Port: uint16(second.Port())}
	if routeTo != nil {
		rt = routeTo(second)
	}
	first, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert, ServerName: "primary",
		Faults: tdstest.Faults{Routing: &rt}})
	return routedPair{first: first, second: second, caFile: caFile}
}

func followConfig(p routedPair, allow ...string) configs.SQLListener {
	cfg := listenerConfig(p.first.Addr(), p.caFile)
	cfg.Upstream.Routing = configs.RoutingFollow
	cfg.Upstream.RoutingAllow = allow
	return cfg
}

// TestRoutingFollow: with routing: follow, the gateway itself connects to
// the server a login reply routes to, verifies it, replays the login there
// and relays the client to it. The client's query is answered by the routed
// server, both upstream legs are encrypted, and the route never reaches the
// client: its login reply has no routing ENVCHANGE.
func TestRoutingFollow(t *testing.T) {
	for _, encrypt := range []string{"true", "strict"} {
		t.Run("encrypt="+encrypt, func(t *testing.T) {
			p := startRoutedPair(t, nil)
			g := startGateway(t, followConfig(p, "127.0.0.1"))
			if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": encrypt})); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			recs, err := p.second.Wait(ctx, func(rs []tdstest.SessionRecord) bool { return len(rs) == 1 && rs[0].RequestCount > 0 })
			if err != nil {
				t.Fatalf("the routed server answered no query: %v", err)
			}
			if r := recs[0]; !r.LoggedIn || r.User != testUser || r.Mode != tdstest.ModeFull || !r.LoginInTLS {
				t.Errorf("routed server's session: logged in %v as %q, mode %v, login in TLS %v", r.LoggedIn, r.User, r.Mode, r.LoginInTLS)
			}
			firstRecs, err := p.first.WaitSessions(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if r := firstRecs[0]; !r.LoggedIn || r.RequestCount != 0 || r.Mode != tdstest.ModeFull {
				t.Errorf("first server's session: logged in %v, %d requests, mode %v; want a login only, encrypted", r.LoggedIn, r.RequestCount, r.Mode)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "upstream": p.first.Addr(), "routed_to": p.second.Addr(), "upstream_tls_version": "TLS 1.2"})
		})
	}

	t.Run("the client never sees the route", func(t *testing.T) {
		p := startRoutedPair(t, nil)
		g := startGateway(t, followConfig(p, "127.0.0.1"))
		toks := rawLoginTDS8(t, g)
		if !hasToken(toks, tds.TokenLoginAck) {
			t.Fatalf("no LOGINACK in the reply: %v", toks)
		}
		for _, tok := range toks {
			if tok.Type != tds.TokenEnvChange {
				continue
			}
			ec, err := tds.ParseEnvChange(tok.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if ec.Type == tds.EnvRouting || ec.Type == tds.EnvEnhancedRouting {
				t.Fatalf("the client got a routing ENVCHANGE")
			}
		}
	})
}

// rawLoginTDS8 logs in through g as a TDS 8 client and returns the tokens
// of the login reply.
func rawLoginTDS8(t *testing.T, g *gateway) []tds.Token {
	t.Helper()
	c := dialRaw(t, g.addr)
	conf := g.pki.clientTLS()
	conf.NextProtos = []string{"tds/8.0"}
	tc := tls.Client(c.conn, conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.use(tc)
	c.prelogin(&tds.Prelogin{Version: tds.Version{Major: 1}, Encryption: new(tds.EncryptOn), InstOpt: []byte{0}})
	if err := c.send(tds.PacketLogin7, c.login7(testUser, testPass, 4096)); err != nil {
		t.Fatal(err)
	}
	return c.replyTokens(tds.TDS74)
}

// TestRoutingNotFollowed: routes the gateway will not follow are refused
// with 50906 and a message saying why, and nothing reaches the routed
// server.
func TestRoutingNotFollowed(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		want  string
	}{
		{name: "outside routing_allow", allow: []string{"*.corp.local"}, want: "not in upstream.routing_allow"},
		{name: "second route", allow: []string{"127.0.0.1"}, want: "second route"},
		{name: "loop", allow: []string{"127.0.0.1"}, want: "routing loop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p routedPair
			switch tc.name {
			case "second route":
				p = startChainedRoutes(t)
			case "loop":
				p = startSelfRoute(t)
			default:
				p = startRoutedPair(t, nil)
			}
			g := startGateway(t, followConfig(p, tc.allow...))
			err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
			if err == nil {
				t.Fatal("the login succeeded")
			}
			me := sqlError(t, err)
			if me.Number != ErrorNumberRoutingRefused || !strings.Contains(me.Message, tc.want) {
				t.Fatalf("error %d %q, want %d saying %q", me.Number, me.Message, ErrorNumberRoutingRefused, tc.want)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "refused", "error_number": ErrorNumberRoutingRefused})
			if tc.name == "outside routing_allow" {
				if n := len(p.second.Sessions()); n != 0 {
					t.Errorf("the routed server got %d connection(s)", n)
				}
			}
		})
	}
}

// startChainedRoutes: the first double routes to the second, which routes
// to a third.
func startChainedRoutes(t *testing.T) routedPair {
	t.Helper()
	cert, root, err := tdstest.NewCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	third, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert})
	second, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert,
		Faults: tdstest.Faults{Routing: &tds.Routing{Server: "127.0.0.1", Port: uint16(third.Port())}}})
	first, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert,
		Faults: tdstest.Faults{Routing: &tds.Routing{Server: "127.0.0.1", Port: uint16(second.Port())}}})
	return routedPair{first: first, second: second, caFile: caFile}
}

// startSelfRoute: the double routes to its own address.
func startSelfRoute(t *testing.T) routedPair {
	t.Helper()
	cert, root, err := tdstest.NewCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	// The port is not known before the double listens: route to a fixed
	// address the double then takes.
	ln := freeLoopbackAddr(t)
	rt := tds.Routing{Server: "127.0.0.1", Port: uint16(ln.port)}
	first, _ := upstreamDouble(t, tdstest.Config{Addr: ln.addr, Encryption: tdstest.EncryptForced, Certificate: &cert,
		Faults: tdstest.Faults{Routing: &rt}})
	return routedPair{first: first, second: first, caFile: caFile}
}

// TestRoutedCertificateVerified: the routed server's certificate is
// verified for the routed host name; one that does not match is 50904 and
// the login is never sent there.
func TestRoutedCertificateVerified(t *testing.T) {
	cert, root, err := tdstest.NewCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := tdstest.NewCertificate("not-the-replica.test")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(caFile, root, 0o600); err != nil {
		t.Fatal(err)
	}
	second, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &other})
	first, _ := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert,
		Faults: tdstest.Faults{Routing: &tds.Routing{Server: "127.0.0.1", Port: uint16(second.Port())}}})
	g := startGateway(t, followConfig(routedPair{first: first, second: second, caFile: caFile}, "127.0.0.1"))
	err = selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
	if err == nil {
		t.Fatal("the login succeeded through an unverified routed server")
	}
	if me := sqlError(t, err); me.Number != ErrorNumberUpstreamCertificate || !strings.Contains(me.Message, second.Addr()) {
		t.Fatalf("error %d %q, want %d naming %s", me.Number, me.Message, ErrorNumberUpstreamCertificate, second.Addr())
	}
	g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "upstream_error", "routed_to": second.Addr()})
	for _, r := range second.Sessions() {
		if r.User != "" {
			t.Errorf("the unverified routed server received a LOGIN7 for %q", r.User)
		}
	}
}

type loopbackAddr struct {
	addr string
	port int
}

// freeLoopbackAddr finds a free port on 127.0.0.1 for a server that must
// know its address before it listens.
func freeLoopbackAddr(t *testing.T) loopbackAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return loopbackAddr{addr: fmt.Sprintf("127.0.0.1:%d", port), port: port}
}
