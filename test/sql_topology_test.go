package test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The topologies legacy shops run, through the real binary with the
// independent clients: a primary that routes logins to a second server
// (read-only routing, Azure SQL redirection), followed by the gateway.

// routedVersion is the @@VERSION of the server logins are routed to, so
// that each client's answer says which server gave it.
const routedVersion = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) (tdstest double, routed replica)"

// routedEnv is a primary double routing every login to a replica double,
// both with certificates for localhost from one CA, and a gateway with
// upstream.routing: follow in front of the primary.
type routedEnv struct {
	primary, replica *tdstest.Server
	gw               *sqlGateway
}

// newRoutedEnv routes to localhost:<replica port>. localhost resolves to
// 127.0.0.1 and ::1 and the replica listens on the first only, so the
// routed dial also goes through the gateway's parallel dial of a name with
// several addresses.
func newRoutedEnv(t *testing.T, clientTap bool) (*routedEnv, *tap) {
	t.Helper()
	cert, rootPEM, err := tdstest.NewCertificate(sqlHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeFile(t, t.TempDir(), "ag-ca.pem", rootPEM)
	replica := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert, Version: routedVersion, ServerName: "replica"}).srv
	route := tds.Routing{Server: sqlHost, Port: uint16(replica.Port())}
	primary := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: &cert, ServerName: "primary",
		Faults: tdstest.Faults{Routing: &route}}).srv
	cfg := newSQLConfig(t, "required", primary.Addr(), caFile)
	cfg.SQL[0].Upstream.Routing = "follow"
	cfg.SQL[0].Upstream.RoutingAllow = []string{sqlHost}
	env := &routedEnv{primary: primary, replica: replica, gw: startSQLGateway(t, cfg)}
	var tp *tap
	if clientTap {
		tp = newTap(t, env.gw.addr)
	}
	return env, tp
}

// check waits for the end of the sessions and checks that the primary saw a
// login only, the replica the login and the client's queries, each on a
// fully encrypted leg, and that the audit line names both.
func (e *routedEnv) check(t *testing.T) {
	t.Helper()
	ctx := sqlCtx(t)
	p, err := e.primary.WaitSession(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !p.LoggedIn || p.RequestCount != 0 || p.Mode != tdstest.ModeFull || !p.LoginInTLS {
		t.Errorf("primary: logged in %t, %d requests, mode %v, LOGIN7 in TLS %t; want an encrypted login only",
			p.LoggedIn, p.RequestCount, p.Mode, p.LoginInTLS)
	}
	r, err := e.replica.WaitSession(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !r.LoggedIn || r.User != sqlUser || r.RequestCount == 0 || r.Mode != tdstest.ModeFull || !r.LoginInTLS {
		t.Errorf("replica: logged in %t as %q, %d requests, mode %v, LOGIN7 in TLS %t; want the client's encrypted session",
			r.LoggedIn, r.User, r.RequestCount, r.Mode, r.LoginInTLS)
	}
	if n := len(e.replica.Sessions()); n != 1 {
		t.Errorf("the replica had %d sessions, want 1 (the gateway's): a client followed the route itself", n)
	}
	line := e.gw.loginLine(t, map[string]string{"outcome": "ok", "upstream": e.primary.Addr(), "routed_to": sqlHost + ":" + strconv.Itoa(e.replica.Port())})
	assertEncryptedClientLeg(t, line, line.str("client_tls_version"))
}

// TestSQLRoutingFollow: every client logs in through a gateway whose
// upstream routes it, and is answered by the routed server, without ever
// seeing the route (it would otherwise connect to the replica itself).
func TestSQLRoutingFollow(t *testing.T) {
	t.Parallel()
	t.Run("go-mssqldb", func(t *testing.T) {
		t.Parallel()
		env, tp := newRoutedEnv(t, true)
		db := openMSSQL(t, mssqlDSN(tp.addr(), verifiedParams("true", env.gw.rootFile)))
		ctx := sqlCtx(t)
		var version string
		if err := db.QueryRowContext(ctx, "SELECT @@VERSION").Scan(&version); err != nil {
			t.Fatal(err)
		}
		if version != routedVersion {
			t.Errorf("@@VERSION %q, want the routed server's", version)
		}
		_ = db.Close()
		env.check(t)
		// The client made one connection, to the gateway.
		caps, err := tp.wait(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(caps) != 1 {
			t.Errorf("the client made %d connections to the gateway, want 1", len(caps))
		}
	})
	t.Run("go-mssqldb strict", func(t *testing.T) {
		t.Parallel()
		env, _ := newRoutedEnv(t, false)
		db := openMSSQL(t, mssqlDSN(env.gw.addr, verifiedParams("strict", env.gw.rootFile)))
		if err := mssqlQueries(sqlCtx(t), db); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		env.check(t)
	})
	t.Run("FreeTDS", func(t *testing.T) {
		t.Parallel()
		env, _ := newRoutedEnv(t, false)
		conf := "\tencryption = require\n\tca file = " + env.gw.rootFile + "\n\tcheck certificate hostname = yes\n"
		out, err := runTSQL(t, env.gw.port, conf, "SELECT @@VERSION\ngo\n"+tsqlScript)
		if err != nil || !tsqlOK(out) || !strings.Contains(out, "routed replica") {
			t.Fatalf("tsql: %v\n%s", err, out)
		}
		env.check(t)
	})
	t.Run("tedious", func(t *testing.T) {
		t.Parallel()
		env, _ := newRoutedEnv(t, false)
		res := runTedious(t, env.gw.port, true, env.gw.rootFile)
		checkTedious(t, res)
		if !strings.Contains(res.Results.Version, "routed replica") {
			t.Errorf("tedious: @@VERSION %q, want the routed server's", res.Results.Version)
		}
		env.check(t)
	})
	t.Run("pytds", func(t *testing.T) {
		t.Parallel()
		env, _ := newRoutedEnv(t, false)
		res := runPytds(t, env.gw.port, env.gw.rootFile)
		checkPytds(t, res)
		if !strings.Contains(res.Results.Version, "routed replica") {
			t.Errorf("pytds: @@VERSION %q, want the routed server's", res.Results.Version)
		}
		env.check(t)
	})
}
