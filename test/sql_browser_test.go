package test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// Named instances through the real binary: the gateway's SQL Browser
// answers for its listeners, and its upstream may itself be a named
// instance found through that server's Browser. Clients always ask UDP
// port 1434 of the host they connect to, so each test gets a loopback
// address of its own, with the Browser on port 1434 and the listener on
// port 0 of that address.

const namedInstance = "SQLEXPRESS"

// nextBrowserHost hands each caller of browserHost its own addresses, from
// a random start so that other test processes rarely pick the same ones.
var nextBrowserHost atomic.Int64

func init() { nextBrowserHost.Store(rand.Int64N(5000)) }

// browserHost returns a 127.0.x.y address whose UDP port 1434 is free now
// and that no other test of this process is given.
func browserHost(t *testing.T) string {
	t.Helper()
	for range 1000 {
		i := nextBrowserHost.Add(1) % 10000
		host := net.IPv4(127, 0, byte(20+i/250), byte(2+i%250)).String()
		c, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(browser.Port)))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		return host
	}
	t.Fatal("no loopback address with UDP port 1434 free")
	return ""
}

// namedEnv is a gateway announcing its listener as HOST\SQLEXPRESS, in
// front of a double that is itself a named instance behind its own Browser
// (so the upstream address is DOUBLEHOST\UPSTREAM).
type namedEnv struct {
	host    string // the gateway's Browser and listener address
	backend *tdstest.Server
	gw      *sqlGateway
}

func newNamedEnv(t *testing.T) *namedEnv {
	t.Helper()
	ub, err := tdstest.NewBrowser("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ub.Close() })
	cert, rootPEM, err := tdstest.NewCertificate(sqlHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := writeFile(t, t.TempDir(), "backend-ca.pem", rootPEM)
	b := newSQLBackend(t, tdstest.Config{Addr: ub.Host() + ":0", Encryption: tdstest.EncryptForced, Certificate: &cert, Instance: "UPSTREAM"})
	if err := ub.Announce(b.srv); err != nil {
		t.Fatal(err)
	}

	host := browserHost(t)
	cfg := newSQLConfig(t, "required", ub.Host()+`\UPSTREAM`, caFile)
	cfg.SQLBrowser = &gwSQLBrowser{Listen: net.JoinHostPort(host, strconv.Itoa(browser.Port))}
	cfg.SQL[0].Listen = net.JoinHostPort(host, "0")
	cfg.SQL[0].Instance = namedInstance
	// Clients verify the certificate for the host they were given: here
	// the address of the Browser, so that is the listener's hostname.
	cfg.SQL[0].Hostname = host
	g := startSQLGateway(t, cfg)
	return &namedEnv{host: host, backend: b.srv, gw: g}
}

// upstreamLogin waits for the double's first session to have logged in.
func (e *namedEnv) upstreamLogin(t *testing.T) tdstest.SessionRecord {
	t.Helper()
	recs, err := e.backend.Wait(sqlCtx(t), func(r []tdstest.SessionRecord) bool { return len(r) > 0 && r[0].LoggedIn })
	if err != nil {
		t.Fatalf("no login reached the upstream: %v", err)
	}
	r := recs[0]
	if r.User != sqlUser || r.Mode != tdstest.ModeFull || !strings.EqualFold(r.Instance, "UPSTREAM") {
		t.Errorf("upstream session: user %q, mode %v, PRELOGIN instance %q; want an encrypted login to UPSTREAM", r.User, r.Mode, r.Instance)
	}
	return r
}

// TestSQLNamedInstance: go-mssqldb, FreeTDS, tedious and jTDS connect to
// HOST\SQLEXPRESS through the gateway's Browser, with the connection string
// an application already has (only the host changes), and reach a named
// upstream instance the gateway itself found through the upstream's
// Browser.
func TestSQLNamedInstance(t *testing.T) {
	t.Parallel()
	t.Run("go-mssqldb", func(t *testing.T) {
		t.Parallel()
		e := newNamedEnv(t)
		q := url.Values{}
		q.Set("encrypt", "true")
		q.Set("certificate", e.gw.rootFile)
		q.Set("hostNameInCertificate", e.host)
		q.Set("database", "master")
		u := url.URL{Scheme: "sqlserver", User: url.UserPassword(sqlUser, sqlPassword), Host: e.host, Path: namedInstance, RawQuery: q.Encode()}
		db := openMSSQL(t, u.String())
		if err := mssqlQueries(sqlCtx(t), db); err != nil {
			t.Fatalf("go-mssqldb to %s\\%s: %v", e.host, namedInstance, err)
		}
		_ = db.Close()
		e.upstreamLogin(t)
		e.gw.loginLine(t, map[string]string{"outcome": "ok", "upstream": e.backend.Addr()[:strings.LastIndex(e.backend.Addr(), ":")] + `\UPSTREAM`})
	})
	t.Run("FreeTDS", func(t *testing.T) {
		t.Parallel()
		e := newNamedEnv(t)
		tsql := needTSQL(t)
		dir := t.TempDir()
		conf := writeFile(t, dir, "freetds.conf", []byte("[global]\n\ttds version = 7.4\n[gw]\n\thost = "+e.host+
			"\n\tinstance = "+strings.ToLower(namedInstance)+"\n\tencryption = require\n\tca file = "+e.gw.rootFile+"\n"))
		ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, tsql, "-S", "gw", "-U", sqlUser, "-P", sqlPassword)
		cmd.Stdin = strings.NewReader(tsqlScript)
		cmd.Env = append(os.Environ(), "FREETDSCONF="+conf, "TDSVER=7.4", "HOME="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || !tsqlOK(out.String()) {
			t.Fatalf("tsql to %s\\%s: %v\n%s", e.host, namedInstance, err, &out)
		}
		e.upstreamLogin(t)
	})
	t.Run("tedious", func(t *testing.T) {
		t.Parallel()
		needTedious(t)
		e := newNamedEnv(t)
		ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
		defer cancel()
		res, err := clients.Tedious{Host: e.host, Instance: namedInstance, User: sqlUser, Password: sqlPassword, Encrypt: true, CAFile: e.gw.rootFile}.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkTedious(t, res)
		e.upstreamLogin(t)
	})
	t.Run("jTDS", func(t *testing.T) {
		t.Parallel()
		_, _, err := clients.JTDSSetup()
		requireClient(t, err, "the Debian packages default-jdk-headless and libjtds-java")
		e := newNamedEnv(t)
		ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
		defer cancel()
		res, err := clients.JTDS{
			URL:  "jdbc:jtds:sqlserver://" + e.host + "/master;instance=" + namedInstance + ";ssl=require;loginTimeout=30",
			User: sqlUser, Password: sqlPassword, Dir: t.TempDir(),
		}.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK {
			t.Fatalf("jTDS to %s\\%s: stage %s, %s %s", e.host, namedInstance, res.Stage, res.Code, res.Error)
		}
		if res.Results.Select1 != 1 {
			t.Errorf("jTDS: SELECT 1 = %d", res.Results.Select1)
		}
		if r := e.upstreamLogin(t); r.Library != "jTDS" {
			t.Errorf("upstream login library %q, want jTDS", r.Library)
		}
	})
}
