package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// Faults under load: upstreams killed and restarted on the same port,
// certificates rotated on both sides. Only the work in flight at the
// moment of a fault may fail, and only cleanly (a 502/504 page, a TDS
// ERROR, or the connection of a session that was using the dead upstream);
// the gateway process is never restarted.

// proofPhase names the phases of a fault scenario, in order.
type proofPhase int32

// proofLoad runs op on workers goroutines until stopped (or 4 minutes pass),
// counting outcomes per phase: op returns "" for success, else a kind.
type proofLoad struct {
	phase  atomic.Int32
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	count map[proofPhase]map[string]int
	ok    map[proofPhase]int
}

func startProofLoad(t *testing.T, workers int, op func(ctx context.Context, worker int) string) *proofLoad {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	l := &proofLoad{cancel: cancel, count: map[proofPhase]map[string]int{}, ok: map[proofPhase]int{}}
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; i < 100000 && ctx.Err() == nil; i++ {
				p := proofPhase(l.phase.Load())
				kind := op(ctx, w)
				if ctx.Err() != nil {
					return // stopped mid-operation: not an outcome
				}
				if proofPhase(l.phase.Load()) != p {
					// In flight when the fault (or the recovery) happened.
					p = proofCrossing
				}
				l.mu.Lock()
				if kind == "" {
					l.ok[p]++
				} else {
					if l.count[p] == nil {
						l.count[p] = map[string]int{}
					}
					l.count[p][kind]++
				}
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *proofLoad) set(p proofPhase) { l.phase.Store(int32(p)) }

func (l *proofLoad) stop() {
	l.cancel()
	l.wg.Wait()
}

// waitOK waits until at least n operations succeeded in phase p.
func (l *proofLoad) waitOK(t *testing.T, p proofPhase, n int, what string) {
	t.Helper()
	testkit.Eventually(t, 2*time.Minute, what, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ok[p] < n {
			return fmt.Errorf("%d successes so far; failures %v", l.ok[p], l.count[p])
		}
		return nil
	})
}

// waitFail waits until at least n operations failed in phase p.
func (l *proofLoad) waitFail(t *testing.T, p proofPhase, n int, what string) {
	t.Helper()
	testkit.Eventually(t, 2*time.Minute, what, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		total := 0
		for _, c := range l.count[p] {
			total += c
		}
		if total < n {
			return fmt.Errorf("%d failures so far (%d successes)", total, l.ok[p])
		}
		return nil
	})
}

func (l *proofLoad) snapshot(p proofPhase) (ok int, fails map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok[p], maps.Clone(l.count[p])
}

// proofRestart is what a load saw across an upstream killed and restarted.
type proofRestart struct {
	before, recovered                                  int // successes with the upstream up
	beforeFails, downFails, afterFails, recoveredFails map[string]int
	inFlight                                           map[string]int // operations that crossed a phase change
}

func (r proofRestart) String() string {
	return fmt.Sprintf("before %d OK; in flight at the kill %v; down %v; after restart %d OK, 0 failed; same gateway process",
		r.before, r.inFlight, r.downFails, r.recovered)
}

// acrossRestart runs the phases of an upstream fault under l: ok successes,
// kill, failsDown failures (what names them), restart, the first success,
// ok more; then it stops l. Failures while the upstream was up fail t; the
// caller judges those while it was down.
func (l *proofLoad) acrossRestart(t *testing.T, ok, failsDown int, what string, kill, restart func()) proofRestart {
	t.Helper()
	l.waitOK(t, proofBefore, ok, "load before the kill")
	l.set(proofDown)
	kill()
	l.waitFail(t, proofDown, failsDown, what)
	l.set(proofAfter)
	restart()
	l.waitOK(t, proofAfter, 1, "the first success after the restart")
	l.set(proofRecovered)
	l.waitOK(t, proofRecovered, ok, "load after the restart")
	l.stop()

	var r proofRestart
	r.before, r.beforeFails = l.snapshot(proofBefore)
	_, r.downFails = l.snapshot(proofDown)
	_, r.afterFails = l.snapshot(proofAfter)
	_, r.inFlight = l.snapshot(proofCrossing)
	r.recovered, r.recoveredFails = l.snapshot(proofRecovered)
	if len(r.beforeFails) > 0 || len(r.recoveredFails) > 0 {
		t.Errorf("failures with the upstream up: before %v, after recovery %v", r.beforeFails, r.recoveredFails)
	}
	return r
}

// proofHTTPOutcome classifies a request's outcome: "" for 200, "status N" for a
// gateway error page, "transport" for a broken connection.
func proofHTTPOutcome(resp *http.Response, err error) string {
	if err != nil {
		return "transport: " + proofErrClass(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	if (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout) && strings.Contains(string(body), "Gateway") {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	return fmt.Sprintf("unexpected %s %q", resp.Status, body)
}

// proofSQLOutcome classifies a SQL operation's outcome: "" for success,
// "tds N" for an ERROR token, "conn" for a broken connection.
func proofSQLOutcome(err error) string {
	if err == nil {
		return ""
	}
	var me mssql.Error
	if errors.As(err, &me) {
		return fmt.Sprintf("tds %d", me.Number)
	}
	return "conn: " + proofErrClass(err)
}

func proofErrClass(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	case strings.Contains(err.Error(), "bad connection"):
		return "bad connection"
	}
	return "other"
}

// proofKillable is an HTTP upstream that can die and come back on the
// same address. /slow holds the request for a moment, so that some work is
// in flight when it dies.
type proofKillable struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func newProofKillable(t *testing.T) *proofKillable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &proofKillable{addr: ln.Addr().String()}
	b.serve(ln)
	t.Cleanup(b.kill)
	return b
}

func (b *proofKillable) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond): // in-flight work, not a readiness wait
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "slow ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *proofKillable) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.srv.Close()
}

func (b *proofKillable) restart(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatalf("restarting the backend on %s: %v", b.addr, err)
	}
	b.serve(ln)
}

const (
	proofBefore proofPhase = iota
	proofDown
	proofAfter
	proofRecovered
	// proofCrossing holds the operations that started in one phase and
	// ended in another: the work in flight at a fault.
	proofCrossing proofPhase = 99
)

// TestVerifyFaults runs the fault scenarios in parallel (make verify).
func TestVerifyFaults(t *testing.T) {
	proofLong(t)
	t.Parallel()
	t.Run("http_upstream_killed", proofHTTPUpstreamKilled)
	t.Run("sql_upstream_killed", proofSQLUpstreamKilled)
	t.Run("gateway_certificate_rotated", proofGatewayCertRotated)
	t.Run("sql_upstream_certificate_rotated", proofUpstreamCertRotated)
}

func proofHTTPUpstreamKilled(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "fault: HTTP upstream killed mid-load, restarted on the same port")
	backend := newProofKillable(t)
	g, roots := proofHTTPGateway(t, "http://"+backend.addr)
	pid := g.cmd.Process.Pid
	client := httpsClient(roots, "app.test", g.httpsAddr)
	l := startProofLoad(t, 8, func(ctx context.Context, w int) string {
		path := "/"
		if w%2 == 0 {
			path = "/slow"
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpsURL("app.test", g.httpsAddr, path), nil)
		return proofHTTPOutcome(client.Do(req))
	})
	r := l.acrossRestart(t, 100, 20, "502s while the upstream is down", backend.kill, func() { backend.restart(t) })
	for _, fails := range []map[string]int{r.downFails, r.afterFails, r.inFlight} {
		for kind := range fails {
			if kind != "status 502" && kind != "status 504" {
				t.Errorf("unclean failure while the upstream was down: %s ×%d", kind, fails[kind])
			}
		}
	}
	if g.cmd.Process.Pid != pid || g.exited() {
		t.Error("the gateway process did not survive")
	}
	proofNoPanic(t, g.proc)
	row.set("%s", r)
}

func proofSQLUpstreamKilled(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "fault: SQL upstream killed mid-load, restarted on the same port")
	backend := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	g := startProofGateway(t, newProofSQLConfig(t, "required", backend.addr(), backend.caFile))
	dsn := proofDSN(g.sqlAddr, g.rootFile, "true")
	// Half the workers keep a session open and run statements on it
	// (their session dies with the upstream: in-flight work); the others
	// log in for every statement (they must get TDS ERRORs while it is
	// down, never a broken connection).
	pools := make([]*proofPool, 6)
	for i := range pools {
		if i%2 == 0 {
			pools[i] = newProofPool(t, dsn)
		}
	}
	var brokenSessions atomic.Int32
	l := startProofLoad(t, len(pools), func(ctx context.Context, w int) string {
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if p := pools[w]; p != nil {
			kind := proofSQLOutcome(p.query(ctx))
			if strings.HasPrefix(kind, "conn") {
				brokenSessions.Add(1)
				return "session broken (in flight)"
			}
			return kind
		}
		return proofSQLOutcome(proofSelect(ctx, t, dsn))
	})
	r := l.acrossRestart(t, 60, 10, "refused logins while the upstream is down", backend.kill, func() { backend.restart(t, nil) })
	for _, fails := range []map[string]int{r.downFails, r.afterFails, r.inFlight} {
		for kind, n := range fails {
			switch kind {
			case "tds 50902", "tds 50905": // unreachable; cut during PRELOGIN, TLS or the login
			case "session broken (in flight)":
			default:
				if strings.HasPrefix(kind, "conn") && fails[kind] == r.inFlight[kind] {
					continue // a logged-in session whose upstream died under it
				}
				t.Errorf("unclean failure while the SQL upstream was down: %s ×%d", kind, n)
			}
		}
	}
	// Each kept session may break once when its upstream dies; database/sql
	// then opens a new one. More than a few per worker means sessions kept
	// breaking after the restart.
	if n := brokenSessions.Load(); n > 3*int32(len(pools)/2) {
		t.Errorf("%d broken sessions for %d session-keeping workers", n, len(pools)/2)
	}
	proofNoPanic(t, g.proc)
	row.set("%s", r)
}

// proofPool is a go-mssqldb pool of one connection that is kept open.
type proofPool struct{ db *sql.DB }

func newProofPool(t *testing.T, dsn string) *proofPool {
	return &proofPool{db: proofOpen(t, dsn)}
}

// query holds the session busy for a moment, then runs proofQuery.
func (p *proofPool) query(ctx context.Context) error {
	if _, err := p.db.ExecContext(ctx, "WAITFOR DELAY '00:00:00.100'"); err != nil {
		return err
	}
	var n int64
	return p.db.QueryRowContext(ctx, proofQuery).Scan(&n)
}

// proofOperatorCert issues a leaf for app.test and proofSQLHost from ca.
func proofOperatorCert(t *testing.T, ca *testCA) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	return ca.issue(t, "app.test", proofSQLHost)
}

func proofGatewayCertRotated(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "fault: gateway certificate rotated on disk under HTTPS+SQL load")
	ca := newTestCA(t, "Proof Operator CA")
	caFile := writeFile(t, t.TempDir(), "operator-ca.PEM", ca.PEM)
	certPEM, keyPEM, first := proofOperatorCert(t, ca)
	dir := t.TempDir()
	certFile, keyFile := writeFile(t, dir, "gw.crt", certPEM), writeFile(t, dir, "gw.key", keyPEM)

	web := newProofBackend(t)
	backend := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	cfg := newProofSQLConfig(t, "required", backend.addr(), backend.caFile)
	cfg.TLS.Certificates = []gwCert{{CertFile: certFile, KeyFile: keyFile}}
	cfg.HTTP = gwHTTP{Listen: "127.0.0.1:0", Sites: []gwSite{{Hosts: []string{"app.test"}, Upstreams: []string{web.URL}}}}
	g := startProofGateway(t, cfg)
	roots := testpki.MustPoolOf(t, ca.PEM)

	// Every operation makes a new TLS handshake, so each sees the
	// certificate being served at that moment.
	client := httpsClient(roots, "app.test", g.httpsAddr)
	client.Transport.(*http.Transport).DisableKeepAlives = true
	dsn := proofDSN(g.sqlAddr, caFile, "true")
	var serials sync.Map
	l := startProofLoad(t, 6, func(ctx context.Context, w int) string {
		if w%3 == 2 {
			return proofSQLOutcome(proofSelect(ctx, t, dsn))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpsURL("app.test", g.httpsAddr, "/"), nil)
		resp, err := client.Do(req)
		if err == nil {
			serials.Store(resp.TLS.PeerCertificates[0].SerialNumber.String(), true)
		}
		return proofHTTPOutcome(resp, err)
	})
	l.waitOK(t, proofBefore, 60, "load before the rotation")
	l.set(proofDown)
	certPEM, keyPEM, next := proofOperatorCert(t, ca)
	// Overwritten in place, key first, as a copy over a share does: for a
	// moment the pair on disk does not match, and the old one must stay.
	writeFile(t, dir, "gw.key", keyPEM)
	writeFile(t, dir, "gw.crt", certPEM)
	testkit.Eventually(t, 90*time.Second, "the new certificate served on both listeners", func() error {
		// The SQL listener is asked with TLS first (TDS 8), which serves
		// the same certificate as TLS inside PRELOGIN.
		for addr, name := range map[string]string{g.httpsAddr: "app.test", g.sqlAddr: proofSQLHost} {
			leaf, err := servedLeaf(addr, name, roots)
			if err != nil {
				return err
			}
			if !leaf.Equal(next) {
				return fmt.Errorf("%s still serves serial %x", addr, leaf.SerialNumber)
			}
		}
		return nil
	})
	l.set(proofAfter)
	l.waitOK(t, proofAfter, 60, "load after the rotation")
	l.stop()
	for _, p := range []proofPhase{proofBefore, proofDown, proofAfter, proofCrossing} {
		if _, fails := l.snapshot(p); len(fails) > 0 {
			t.Errorf("failed operations during the rotation (phase %d): %v", p, fails)
		}
	}
	_, sawFirst := serials.Load(first.SerialNumber.String())
	_, sawNext := serials.Load(next.SerialNumber.String())
	if !sawFirst || !sawNext {
		t.Errorf("the HTTPS load saw the first certificate %t, the new one %t", sawFirst, sawNext)
	}
	ok1, _ := l.snapshot(proofBefore)
	ok2, _ := l.snapshot(proofDown)
	ok3, _ := l.snapshot(proofAfter)
	ok4, _ := l.snapshot(proofCrossing)
	ok3 += ok4
	proofNoPanic(t, g.proc)
	row.set("%d HTTPS+SQL operations (new handshake each) across the swap, 0 failed; both certificates seen", ok1+ok2+ok3)
}

func proofUpstreamCertRotated(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "fault: SQL upstream certificate rotated (untrusted CA, then trusted)")
	trusted := newTestCA(t, "Proof SQL Server CA")
	leaf := func(ca *testCA) *tls.Certificate {
		certPEM, keyPEM, _ := ca.issue(t, "localhost", "127.0.0.1")
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	backend := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced, Certificate: leaf(trusted)})
	caFile := writeFile(t, t.TempDir(), "sql-ca.PEM", trusted.PEM)
	g := startProofGateway(t, newProofSQLConfig(t, "required", backend.addr(), caFile))
	dsn := proofDSN(g.sqlAddr, g.rootFile, "true")
	l := startProofLoad(t, 4, func(ctx context.Context, w int) string {
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		return proofSQLOutcome(proofSelect(ctx, t, dsn))
	})
	l.waitOK(t, proofBefore, 30, "logins before the rotation")
	l.set(proofDown)
	backend.kill()
	backend.restart(t, leaf(newTestCA(t, "Rogue CA")))
	rogue := backend.srv
	l.waitFail(t, proofDown, 1, "a refused login")
	testkit.Eventually(t, time.Minute, "logins refused for the untrusted certificate", func() error {
		_, fails := l.snapshot(proofDown)
		if fails["tds 50904"] < 10 {
			return fmt.Errorf("refusals so far: %v", fails)
		}
		return nil
	})
	l.set(proofAfter)
	backend.kill()
	backend.restart(t, leaf(trusted))
	l.waitOK(t, proofAfter, 1, "the first login after trusting again")
	l.set(proofRecovered)
	l.waitOK(t, proofRecovered, 30, "logins after the rotation")
	l.stop()

	before, beforeFails := l.snapshot(proofBefore)
	_, downFails := l.snapshot(proofDown)
	_, afterFails := l.snapshot(proofAfter)
	_, inFlight := l.snapshot(proofCrossing)
	recovered, recFails := l.snapshot(proofRecovered)
	if len(beforeFails) > 0 || len(recFails) > 0 {
		t.Errorf("failures with a trusted upstream: before %v, after %v", beforeFails, recFails)
	}
	allowed := []string{"tds 50902", "tds 50904", "tds 50905"} // restarting, untrusted, cut mid-handshake
	for _, fails := range []map[string]int{downFails, afterFails, inFlight} {
		for kind, n := range fails {
			if !slices.Contains(allowed, kind) && (!strings.HasPrefix(kind, "conn") || fails[kind] != inFlight[kind]) {
				t.Errorf("unclean failure during the rotation: %s ×%d", kind, n)
			}
		}
	}
	for _, r := range rogue.Sessions() {
		if r.LoggedIn {
			t.Errorf("the rogue-certificate server received a login (session %d)", r.ID)
		}
	}
	proofNoPanic(t, g.proc)
	row.set("trusted: %d OK; in flight at the swaps %v; untrusted CA: %v, 0 logins sent; trusted again: %d OK, 0 failed", before, inFlight, downFails, recovered)
}
