package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

// Several gateways sharing one Redis (Debian's redis-server, started here
// on a free loopback port), as behind a TCP load balancer.

// redisProc is a running redis-server that keeps its data in dir (an
// append-only file), so that a restart finds it again.
type redisProc struct {
	*proc
	port int
	dir  string
}

func startRedisProc(t *testing.T, port int, dir string) *redisProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	requireClient(t, err, "the Debian packages redis-server and redis-tools")
	p := startProc(t, procSpec{name: "redis-server", bin: bin, args: []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always",
	}})
	r := &redisProc{proc: p, port: port, dir: dir}
	testkit.Eventually(t, 20*time.Second, "redis-server answering", func() error {
		out, err := r.cli(t, "PING")
		if err != nil || strings.TrimSpace(out) != "PONG" {
			return fmt.Errorf("PING: %q %v", out, err)
		}
		return nil
	})
	return r
}

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	return startRedisProc(t, testkit.MustFreePort(t), t.TempDir())
}

// cli runs redis-cli against r.
func (r *redisProc) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("redis-cli")
	requireClient(t, err, "the Debian package redis-tools")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-p", strconv.Itoa(r.port), "--no-raw"}, args...)...).Output()
	return string(out), err
}

// rawCLI runs redis-cli with --raw (values as they are stored).
func (r *redisProc) rawCLI(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-p", strconv.Itoa(r.port), "--raw"}, args...)...).Output()
	if err != nil {
		t.Fatalf("redis-cli %v: %v", args, err)
	}
	return out
}

// clusterKey is the base64 storage encryption key of a test cluster.
func clusterKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	s := base64.StdEncoding.EncodeToString(k)
	registerSecret(s)
	return s
}

const clusterKeyEnv = "GW_CLUSTER_KEY"

// clusterConfig is a gateway of a cluster on r, serving hosts from
// upstream, with its admin endpoint on a free port.
func clusterConfig(t *testing.T, r *redisProc, upstream string, hosts ...string) *gwConfig {
	t.Helper()
	cfg := newConfig(t, upstream, hosts...)
	cfg.Storage = fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
	cfg.StorageRedis = &gwStorageRedis{EncryptionKeyEnv: clusterKeyEnv, Prefix: "gwtest"}
	cfg.Admin = gwAdmin{Listen: "127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t))}
	return cfg
}

// TestClusterInternalCA: three gateways on one Redis with the internal CA
// agree on one root (`gateway ca root` prints the same on all three), each
// serves a leaf of it, and Redis holds no private key in clear: every raw
// value, read with redis-cli, has no PEM key and parses as no DER key.
func TestClusterInternalCA(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	key := clusterKey(t)
	env := clusterKeyEnv + "=" + key
	backend := newEchoBackend(t, nil)
	var gws []*gateway
	var files []string
	for range 3 {
		cfg := clusterConfig(t, r, backend.URL, "app.cluster.test")
		f := cfg.write(t)
		files = append(files, f)
		gws = append(gws, startGateway(t, f, env))
	}
	var roots [][]byte
	for _, f := range files {
		res := runCLI(t, []string{env}, "ca", "root", "--config", f)
		if res.code != 0 {
			t.Fatalf("gateway ca root: %s", res)
		}
		roots = append(roots, []byte(res.stdout))
	}
	for i := 1; i < 3; i++ {
		if !bytes.Equal(roots[0], roots[i]) {
			t.Fatalf("gateway %d prints another root than gateway 1", i+1)
		}
	}
	pool := testpki.MustPoolOf(t, roots[0])
	for i, g := range gws {
		if _, err := handshake(g.httpsAddr, "app.cluster.test", pool); err != nil {
			t.Errorf("gateway %d: its certificate does not verify against the shared root: %v", i+1, err)
		}
	}
	assertNoClearKeys(t, r)

	// A wrong key: the gateway refuses to start rather than re-issue.
	wrong := clusterKey(t)
	res := runCLI(t, []string{clusterKeyEnv + "=" + wrong}, "run", "--config", files[0])
	if res.code != 1 || !strings.Contains(res.stderr, "encryption_key_env") {
		t.Errorf("a gateway with another storage key: %s; want exit 1 naming storage_redis.encryption_key_env", res)
	}
}

// assertNoClearKeys reads every value in Redis with redis-cli and checks
// that none is a private key, in PEM or DER.
func assertNoClearKeys(t *testing.T, r *redisProc) {
	t.Helper()
	keys := strings.Fields(string(r.rawCLI(t, "--scan")))
	if len(keys) < 5 {
		t.Fatalf("only %d keys in Redis: %v", len(keys), keys)
	}
	for _, k := range keys {
		var vals [][]byte
		switch strings.TrimSpace(string(r.rawCLI(t, "TYPE", k))) {
		case "hash":
			vals = append(vals, r.rawCLI(t, "HGET", k, "v"))
		case "string":
			vals = append(vals, r.rawCLI(t, "GET", k))
		case "set":
			vals = append(vals, r.rawCLI(t, "SMEMBERS", k))
		}
		for _, v := range vals {
			v = bytes.TrimSuffix(v, []byte("\n"))
			if bytes.Contains(v, []byte("PRIVATE KEY")) || bytes.Contains(v, []byte("-----BEGIN")) {
				t.Errorf("Redis key %s holds PEM in clear", k)
			}
			if isDERKey(v) {
				t.Errorf("Redis key %s holds a DER private key in clear", k)
			}
		}
	}
}

// isDERKey reports whether b, or a PEM block in it, parses as a private key.
func isDERKey(b []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		return true
	}
	if _, err := x509.ParseECPrivateKey(b); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return true
	}
	if blk, _ := pem.Decode(b); blk != nil {
		return isDERKey(blk.Bytes)
	}
	return false
}

// gatedRelay forwards TCP connections to the first of targets that
// accepts, and holds each connection until open is closed: pebble's
// HTTP-01 validation can be made to wait while the test kills a gateway.
type gatedRelay struct {
	ln      net.Listener
	targets []string
	open    chan struct{}
	once    sync.Once
}

func newGatedRelay(t *testing.T, port int, targets []string, startOpen bool) *gatedRelay {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	// A copy: the test drops a killed gateway from its own list meanwhile.
	g := &gatedRelay{ln: ln, targets: append([]string(nil), targets...), open: make(chan struct{})}
	if startOpen {
		g.release()
	}
	go g.serve()
	t.Cleanup(func() { _ = ln.Close(); g.release() })
	return g
}

func (g *gatedRelay) release() { g.once.Do(func() { close(g.open) }) }

func (g *gatedRelay) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			<-g.open
			var up net.Conn
			for _, tg := range g.targets {
				if up, err = net.DialTimeout("tcp", tg, 2*time.Second); err == nil {
					break
				}
			}
			if up == nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c) }()
			_, _ = io.Copy(c, up)
		}()
	}
}

// TestClusterACME: three gateways on one Redis, with pebble validating
// HTTP-01 on whichever gateway answers (a load balancer in front of their
// redirect listeners): one order for the name across the cluster, and all
// three serve the same certificate (same serial). Then, with the
// validation held back, the gateway holding the order is killed: the
// others take the lock once its lease ends and finish.
func TestClusterACME(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"pebble", "pebble-challtestsrv"} {
		_, err := exec.LookPath(bin)
		requireClient(t, err, "the Debian package pebble")
	}
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			t.Parallel()
			r := startRedis(t)
			env := clusterKeyEnv + "=" + clusterKey(t)
			backend := newEchoBackend(t, nil)
			httpPort := testkit.MustFreePort(t)
			pb := startPebble(t, httpPort, testkit.MustFreePort(t))
			type member struct {
				g        *gateway
				redirect string
			}
			var members []member
			var redirects []string
			var cfgs []string
			for range 3 {
				cfg := clusterConfig(t, r, backend.URL, acmeName)
				cfg.TLS.Issuer = "acme"
				cfg.TLS.ACME = &gwACME{CA: pb.directory, CARoot: pb.listenerCertFile, DisableTLSALPNChallenge: true}
				cfg.HTTP.RedirectListen = "127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t))
				redirects = append(redirects, cfg.HTTP.RedirectListen)
				cfgs = append(cfgs, cfg.write(t))
			}
			relay := newGatedRelay(t, httpPort, redirects, !kill)
			// The gateways start at once, as a cluster does; each waits
			// for its certificate before saying ready.
			procs := make([]*proc, 3)
			for i, f := range cfgs {
				procs[i] = startProc(t, procSpec{name: fmt.Sprintf("gateway %d", i+1), bin: gatewayBin, args: []string{"run", "--config", f}, env: []string{env}})
			}
			if kill {
				// Wait for the order to be under way (its validation held
				// by the relay), then kill the gateway holding the lock:
				// the lock's value names its process.
				testkit.Eventually(t, 60*time.Second, "pebble's first order", func() error {
					if !strings.Contains(pb.proc.stdout.String(), "Added order") {
						return fmt.Errorf("no order yet")
					}
					return nil
				})
				holder := -1
				testkit.Eventually(t, 30*time.Second, "the lock of the order", func() error {
					for _, k := range strings.Fields(string(r.rawCLI(t, "--scan", "--pattern", "gwtest:lock:*"))) {
						owner := strings.Split(strings.TrimSpace(string(r.rawCLI(t, "GET", k))), ":")
						for i, p := range procs {
							if len(owner) == 3 && owner[1] == strconv.Itoa(p.cmd.Process.Pid) {
								holder = i
								return nil
							}
						}
					}
					return fmt.Errorf("no gateway holds a lock")
				})
				procs[holder].signal(t, syscall.SIGKILL)
				procs[holder].waitExit(t, 10*time.Second)
				t.Logf("killed gateway %d while it held the order", holder+1)
				relay.release()
				procs = append(procs[:holder], procs[holder+1:]...)
				redirects = append(redirects[:holder], redirects[holder+1:]...)
			}
			for i, p := range procs {
				ready := p.waitLog(t, 120*time.Second, `"gateway ready"`, msgIs("gateway ready"))
				members = append(members, member{g: &gateway{proc: p, httpsAddr: ready.str("https_addr")}, redirect: redirects[i]})
			}
			roots := testpki.MustPoolOf(t, pb.issuingRoot(t))
			var serial string
			for i, m := range members {
				st, err := handshake(m.g.httpsAddr, acmeName, roots)
				if err != nil {
					t.Fatalf("gateway %d: %v", i+1, err)
				}
				s := st.PeerCertificates[0].SerialNumber.String()
				if serial == "" {
					serial = s
				} else if s != serial {
					t.Errorf("gateway %d serves serial %s, another %s: each got its own certificate", i+1, s, serial)
				}
			}
			orders := strings.Count(pb.proc.stdout.String(), "Added order")
			switch {
			case !kill && orders != 1:
				t.Errorf("pebble logged %d orders, want exactly 1 for the cluster", orders)
			case kill && (orders < 2 || orders > 3):
				t.Errorf("pebble logged %d orders, want the dead gateway's and the survivor's", orders)
			}
			assertNoClearKeys(t, r)
		})
	}
}

// TestClusterRedisDown: Redis stops while HTTPS and SQL run through every
// gateway of the cluster; they keep serving from memory, gateway_storage_up
// turns 0 and a line says so, /readyz stays ready; when Redis returns
// (with its data) nothing is re-issued.
func TestClusterRedisDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startRedisProc(t, testkit.MustFreePort(t), dir)
	env := clusterKeyEnv + "=" + clusterKey(t)
	b := newOpsSQLBackend(t)
	site := opsSite{host: sqlHost, backend: namedBackend(t, "iis")}
	var gws []*opsGateway
	for range 2 {
		cfg := opsConfig(t, site)
		cfg.Storage = fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
		cfg.StorageRedis = &gwStorageRedis{EncryptionKeyEnv: clusterKeyEnv, Prefix: "gwtest"}
		cfg.SQL = []gwSQL{opsSQL("crm", b)}
		gws = append(gws, startOpsGateway(t, cfg, env))
	}
	serials := map[int]string{}
	check := func(when string) {
		for i, g := range gws {
			st, err := handshake(g.httpsAddr, sqlHost, testpki.MustPoolOf(t, mustRead(t, g.rootFile)))
			if err != nil {
				t.Fatalf("%s: gateway %d HTTPS: %v", when, i+1, err)
			}
			s := st.PeerCertificates[0].SerialNumber.String()
			if serials[i] == "" {
				serials[i] = s
			} else if serials[i] != s {
				t.Errorf("%s: gateway %d serves a new certificate (serial %s, was %s)", when, i+1, s, serials[i])
			}
			if body := g.mustFetch(t, g.opsClient(t, sqlHost, false), sqlHost, "/x"); body != "iis /x" {
				t.Errorf("%s: gateway %d answered %q", when, i+1, body)
			}
			db := g.sqlDB(t, g.sqlAddrs["crm"])
			if err := mssqlQueries(sqlCtx(t), db); err != nil {
				t.Errorf("%s: gateway %d SQL: %v", when, i+1, err)
			}
			_ = db.Close()
		}
	}
	check("with Redis")
	r.signal(t, syscall.SIGKILL)
	r.waitExit(t, 10*time.Second)
	for i, g := range gws {
		g.waitLog(t, 30*time.Second, "the storage-down line", msgIs("redis storage unreachable; serving the certificates in memory"))
		g.waitMetric(t, "gateway_storage_up 0", func(m metrics) error {
			if v := m.get("gateway_storage_up"); v != 0 {
				return fmt.Errorf("gateway_storage_up %v", v)
			}
			return nil
		})
		if code, body := g.readyz(t); code != 200 {
			t.Errorf("gateway %d /readyz with Redis down: %d %q", i+1, code, body)
		}
	}
	check("without Redis")
	startRedisProc(t, r.port, dir)
	for _, g := range gws {
		g.waitMetric(t, "gateway_storage_up 1", func(m metrics) error {
			if v := m.get("gateway_storage_up"); v != 1 {
				return fmt.Errorf("gateway_storage_up %v", v)
			}
			return nil
		})
	}
	check("with Redis back")
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
