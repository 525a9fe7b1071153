package tdstest

import (
	"net/url"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/sqltunnel/browser"
)

// newBrowserFixture starts a Browser on a loopback address of its own and
// a server named instance listening on that address, announced by it.
func newBrowserFixture(t *testing.T, instance string) (*Browser, *fixture) {
	t.Helper()
	b, err := NewBrowser("", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	f := newFixture(t, Config{Addr: b.Host() + ":0", Encryption: EncryptForced, Instance: instance})
	if err := b.Announce(f.srv); err != nil {
		t.Fatal(err)
	}
	return b, f
}

// TestBrowserAnnouncesServer: the double's Browser answers the package's
// own client and go-mssqldb, which connects to HOST\INSTANCE through it.
func TestBrowserAnnouncesServer(t *testing.T) {
	b, f := newBrowserFixture(t, "SQLEXPRESS")
	ctx := testContext(t)
	port, err := browser.LookupPort(ctx, b.Host(), "sqlexpress")
	if err != nil || port != f.srv.Port() {
		t.Fatalf("LookupPort = %d, %v; want %d", port, err, f.srv.Port())
	}

	q := url.Values{}
	q.Set("database", "master")
	q.Set("encrypt", "true")
	q.Set("certificate", f.rootFile)
	q.Set("hostNameInCertificate", testHost)
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(testUser, testPassword), Host: b.Host(), Path: "SQLEXPRESS", RawQuery: q.Encode()}
	_, conn, err := openMSSQL(t, ctx, u.String())
	if err != nil {
		t.Fatalf("go-mssqldb to %s\\SQLEXPRESS: %v", b.Host(), err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("SELECT 1 = %d, %v", n, err)
	}
	recs, err := f.srv.Wait(ctx, func(r []SessionRecord) bool { return len(r) > 0 && r[0].RequestCount > 0 })
	if err != nil {
		t.Fatal(err)
	}
	if rec := recs[0]; !rec.LoggedIn || rec.Instance != "SQLEXPRESS" || rec.ServerName != b.Host()+`\SQLEXPRESS` {
		t.Errorf("record: logged in %t, PRELOGIN instance %q, LOGIN7 server name %q", rec.LoggedIn, rec.Instance, rec.ServerName)
	}
}

func TestBrowserRefusesUnnamedServer(t *testing.T) {
	b, err := NewBrowser("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f := newFixture(t, Config{})
	if err := b.Announce(f.srv); err == nil {
		t.Fatal("announced a server without an instance name")
	}
	// A second Browser on the first one's address cannot start.
	if other, err := NewBrowser(b.Addr(), nil); err == nil {
		_ = other.Close()
		t.Fatalf("a second Browser started on %s", b.Addr())
	}
}
