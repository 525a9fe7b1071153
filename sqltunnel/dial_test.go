package sqltunnel

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// fakeResolver answers LookupHost from a table, like a DNS server with an
// Always On listener's records.
type fakeResolver map[string][]string

func (r fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// blackHoleDialer dials for real, except to the addresses in holes, where
// it waits for its context as a connect to an unreachable subnet does (the
// SYN is never answered), and records that the wait was cancelled.
type blackHoleDialer struct {
	holes map[string]bool // IPs

	mu        sync.Mutex
	cancelled int
	dialled   []string
}

func (d *blackHoleDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	d.mu.Lock()
	d.dialled = append(d.dialled, addr)
	d.mu.Unlock()
	if d.holes[host] {
		<-ctx.Done()
		d.mu.Lock()
		d.cancelled++
		d.mu.Unlock()
		return nil, ctx.Err()
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (d *blackHoleDialer) stats() (cancelled int, dialled []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancelled, append([]string(nil), d.dialled...)
}

// TestUpstreamSeveralAddresses: a name with several addresses is dialled
// on all of them at once (MultiSubnetFailover); the live one wins while the
// black-holed one is still waiting, which is then cancelled. When every
// address is black-holed, the dial timeout bounds the whole attempt and the
// client gets 50902.
func TestUpstreamSeveralAddresses(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	port := strconv.Itoa(srv.Port())
	res := fakeResolver{
		"aglistener.test": {"127.0.0.66", "127.0.0.1", "127.0.0.67"},
		"dead.test":       {"127.0.0.66", "127.0.0.67"},
	}
	const dialTimeout = 2 * time.Second

	t.Run("one live address", func(t *testing.T) {
		d := &blackHoleDialer{holes: map[string]bool{"127.0.0.66": true, "127.0.0.67": true}}
		cfg := listenerConfig("aglistener.test:"+port, caFile)
		cfg.Upstream.ServerName = "127.0.0.1" // the double's certificate
		g := startGateway(t, cfg, WithResolver(res), WithDialer(d), WithDialTimeout(dialTimeout))
		// Long enough to fail the test if the dial waited for the holes.
		if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
			t.Fatal(err)
		}
		g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok"})
		testkit.EventuallyTrue(t, "the black-holed dials to be cancelled", func() bool {
			n, _ := d.stats()
			return n == 2
		})
		_, dialled := d.stats()
		if len(dialled) != 3 {
			t.Errorf("dialled %v, want all three addresses", dialled)
		}
	})

	t.Run("every address black-holed", func(t *testing.T) {
		d := &blackHoleDialer{holes: map[string]bool{"127.0.0.66": true, "127.0.0.67": true}}
		cfg := listenerConfig("dead.test:"+port, caFile)
		g := startGateway(t, cfg, WithResolver(res), WithDialer(d), WithDialTimeout(200*time.Millisecond))
		err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
		if me := sqlError(t, err); me.Number != ErrorNumberUpstreamUnreachable || !strings.Contains(me.Message, "dead.test:"+port) {
			t.Fatalf("error %d %q, want %d naming the upstream", me.Number, me.Message, ErrorNumberUpstreamUnreachable)
		}
		if n, _ := d.stats(); n != 2 {
			t.Errorf("%d dials cancelled by the timeout, want 2", n)
		}
	})

	t.Run("unknown name", func(t *testing.T) {
		g := startGateway(t, listenerConfig("nowhere.test:"+port, caFile), WithResolver(res))
		err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
		if me := sqlError(t, err); me.Number != ErrorNumberUpstreamUnreachable || !strings.Contains(me.Message, "no such host") {
			t.Fatalf("error %d %q, want %d saying no such host", me.Number, me.Message, ErrorNumberUpstreamUnreachable)
		}
	})
}

// fakeInstances is a SQL Browser client answering from a table, counting
// lookups and what was forgotten.
type fakeInstances struct {
	mu      sync.Mutex
	ports   map[string]int // HOST\INSTANCE -> port
	lookups int
	forgot  []string
}

func (f *fakeInstances) LookupPort(_ context.Context, host, instance string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if p, ok := f.ports[strings.ToUpper(host+`\`+instance)]; ok {
		return p, nil
	}
	return 0, errors.New("instance not found")
}

func (f *fakeInstances) Invalidate(host, instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, host+`\`+instance)
}

// TestUpstreamNamedInstance: an upstream host\INSTANCE is dialled on the
// port the SQL Browser gives; a failed dial forgets the answer, so the next
// connection asks again and finds an instance that moved.
func TestUpstreamNamedInstance(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced, Instance: "SQLEXPRESS"})
	dead := freeLoopbackAddr(t)
	ir := &fakeInstances{ports: map[string]int{`127.0.0.1\SQLEXPRESS`: dead.port}}
	g := startGateway(t, listenerConfig(`127.0.0.1\SQLEXPRESS`, caFile), WithInstanceResolver(ir))

	err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
	if me := sqlError(t, err); me.Number != ErrorNumberUpstreamUnreachable {
		t.Fatalf("error %d %q, want %d (the announced port is closed)", me.Number, me.Message, ErrorNumberUpstreamUnreachable)
	}
	ir.mu.Lock()
	if len(ir.forgot) != 1 || ir.forgot[0] != `127.0.0.1\SQLEXPRESS` {
		t.Errorf("forgotten %v, want the instance once", ir.forgot)
	}
	ir.ports[`127.0.0.1\SQLEXPRESS`] = srv.Port() // the instance restarted elsewhere
	ir.mu.Unlock()

	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
		t.Fatalf("after the instance moved: %v", err)
	}
	g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "upstream": `127.0.0.1\SQLEXPRESS`})

	t.Run("no such instance", func(t *testing.T) {
		g := startGateway(t, listenerConfig(`127.0.0.1\NOPE`, caFile), WithInstanceResolver(ir))
		err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
		if me := sqlError(t, err); me.Number != ErrorNumberUpstreamUnreachable || !strings.Contains(me.Message, "instance NOPE") {
			t.Fatalf("error %d %q, want %d naming the instance", me.Number, me.Message, ErrorNumberUpstreamUnreachable)
		}
	})
}

// TestUpstreamNamedInstanceBrowser: with no InstanceResolver given, an
// upstream host\INSTANCE is found through that host's real SQL Browser
// (the double's), and the instance name travels in the upstream PRELOGIN so
// that the server checks it: an instance answering to another name is a
// refused login (50905), never a login sent to the wrong server.
func TestUpstreamNamedInstanceBrowser(t *testing.T) {
	b, err := tdstest.NewBrowser("", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	good, caFile := upstreamDouble(t, tdstest.Config{Addr: b.Host() + ":0", Encryption: tdstest.EncryptForced, Instance: "SQLEXPRESS"})
	if err := b.Announce(good); err != nil {
		t.Fatal(err)
	}
	cfg := listenerConfig(b.Host()+`\sqlexpress`, caFile)
	cfg.Upstream.ServerName = "localhost" // the double's certificate
	g := startGateway(t, cfg)
	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
		t.Fatal(err)
	}
	recs, err := good.Wait(testCtx(t), func(rs []tdstest.SessionRecord) bool { return len(rs) > 0 && rs[0].RequestCount > 0 })
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; !r.LoggedIn || r.Instance != "sqlexpress" {
		t.Errorf("upstream session: logged in %t, PRELOGIN instance %q; want the configured instance", r.LoggedIn, r.Instance)
	}

	t.Run("another instance answers", func(t *testing.T) {
		other, caFile := upstreamDouble(t, tdstest.Config{Addr: b.Host() + ":0", Encryption: tdstest.EncryptForced, Instance: "OTHER"})
		if err := b.SetInstances(browser.Instance{Name: "SQLEXPRESS", Port: other.Port()}); err != nil {
			t.Fatal(err)
		}
		cfg := listenerConfig(b.Host()+`\SQLEXPRESS`, caFile)
		cfg.Upstream.ServerName = "localhost"
		g := startGateway(t, cfg)
		err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
		if me := sqlError(t, err); me.Number != ErrorNumberUpstreamProtocol || !strings.Contains(me.Message, "instance name mismatch") {
			t.Fatalf("error %d %q, want %d for the instance mismatch", me.Number, me.Message, ErrorNumberUpstreamProtocol)
		}
		if recs := other.Sessions(); len(recs) != 1 || recs[0].User != "" {
			t.Errorf("the wrong instance received a login: %+v", recs)
		}
	})
}
