package redisstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server (Debian's) on a free loopback port,
// stopped when the test ends.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	return startRedisWith(t, nil, func(port int) []string { return []string{"--port", strconv.Itoa(port)} })
}

// startRedisWith starts redis-server with the arguments listen gives for a
// free port, and waits until a client with tlsConfig (nil: plain) answers.
func startRedisWith(t *testing.T, tlsConfig *tls.Config, listen func(port int) []string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found (CI is set: install the Debian package redis-server)")
		}
		t.Skip("redis-server not found: install the Debian package redis-server")
	}
	port := testkit.MustFreePort(t)
	dir := t.TempDir()
	args := append(listen(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "yes")
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	s := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	c := redis.NewClient(&redis.Options{Addr: s.addr, TLSConfig: tlsConfig})
	defer c.Close()
	testkit.Eventually(t, 20*time.Second, "redis-server on "+s.addr, func() error {
		if err := c.Ping(context.Background()).Err(); err != nil {
			return fmt.Errorf("%w\n%s", err, out.String())
		}
		return nil
	})
	return s
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

var testKey = bytes.Repeat([]byte{7}, 32)

func openTest(t *testing.T, r *redisServer, key []byte, lease time.Duration) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{URL: r.url(), Key: key, Prefix: "gwtest", LockLease: lease}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRedisConformance runs the storage conformance suite on the Redis
// store.
func TestRedisConformance(t *testing.T) {
	r := startRedis(t)
	runConformance(t, func(t *testing.T) storage {
		return openTest(t, r, testKey, 2*time.Second)
	}, "redis")
}

// TestNoClearValues: what certmagic stores (keys, certificates) is sealed
// in Redis: no value holds PEM or a DER key, and a value moved to another
// key does not open.
func TestNoClearValues(t *testing.T) {
	r := startRedis(t)
	s := openTest(t, r, testKey, 0)
	ctx := context.Background()
	secret := []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI...\n-----END EC PRIVATE KEY-----\n")
	if err := s.Store(ctx, "certificates/ca/app.test/app.test.key", secret); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	defer c.Close()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var raw []byte
		switch c.Type(ctx, k).Val() {
		case "hash":
			raw, _ = c.HGet(ctx, k, "v").Bytes()
		case "string":
			raw, _ = c.Get(ctx, k).Bytes()
		}
		if bytes.Contains(raw, []byte("PRIVATE KEY")) || bytes.Contains(raw, secret[10:30]) {
			t.Errorf("Redis key %s holds the value in clear", k)
		}
	}
	v, _ := c.HGet(ctx, "gwtest:k:certificates/ca/app.test/app.test.key", "v").Bytes()
	c.HSet(ctx, "gwtest:k:moved", "v", v)
	c.SAdd(ctx, "gwtest:index", "moved")
	if _, err := s.Load(ctx, "moved"); err == nil {
		t.Error("a sealed value moved to another key opened")
	}
}

// TestWrongKey: a store opened with another key than the one that sealed
// what is in Redis refuses to start, instead of reading garbage (and
// letting certmagic re-issue).
func TestWrongKey(t *testing.T) {
	r := startRedis(t)
	s := openTest(t, r, testKey, 0)
	if err := s.Store(context.Background(), "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{URL: r.url(), Key: bytes.Repeat([]byte{8}, 32), Prefix: "gwtest"}, nil)
	if err == nil || !strings.Contains(err.Error(), "encryption_key_env") {
		t.Fatalf("Open with another key: %v, want an error naming storage_redis.encryption_key_env", err)
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

// TestRedisDown: a store whose Redis went away says so (Up false) and
// fails its calls with an error, and recovers when Redis answers again.
func TestRedisDown(t *testing.T) {
	r := startRedis(t)
	s := openTest(t, r, testKey, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	if err := s.Ping(ctx); err == nil || s.Up() {
		t.Fatalf("Ping with Redis down: %v, up %v", err, s.Up())
	}
	if _, err := s.Load(ctx, "x"); err == nil {
		t.Error("Load with Redis down succeeded")
	}
}

// TestLockHolderProcess is not a test: it is the process
// testKilledHolder starts and kills while it holds a lock.
func TestLockHolderProcess(t *testing.T) {
	addr := os.Getenv("REDISSTORE_HOLDER_REDIS")
	dir := os.Getenv("REDISSTORE_HOLDER_DIR")
	if addr == "" && dir == "" {
		t.Skip("helper process only")
	}
	var st storage
	if addr != "" {
		s, err := Open(context.Background(), Config{URL: "redis://" + addr + "/0", Key: testKey, Prefix: "gwtest", LockLease: 2 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st = s
	} else {
		st = fileStore(dir)
	}
	if err := st.Lock(context.Background(), "killed"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("LOCKED")
	time.Sleep(time.Hour) // killed by the parent
}

// startHolder starts a process holding the lock "killed" in the store env
// points at, and returns once it holds it.
func startHolder(t *testing.T, env string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$", "-test.v")
	cmd.Env = append(os.Environ(), env)
	var out lineWaiter
	out.want, out.found = "LOCKED", make(chan struct{})
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	select {
	case <-out.found:
	case <-time.After(30 * time.Second):
		t.Fatalf("the holder process did not take the lock: %s", out.buf.String())
	}
	return cmd
}

// lineWaiter closes found when want appears in what is written to it.
type lineWaiter struct {
	buf   bytes.Buffer
	want  string
	found chan struct{}
	done  bool
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.want) {
		w.done = true
		close(w.found)
	}
	return len(p), nil
}

// TestRedisTLS: rediss:// reaches a redis-server that only speaks TLS
// (ElastiCache with in-transit encryption), verifying its certificate
// against storage_redis.ca_file; a server signed by another CA, one the
// system roots do not know, and plain redis:// to the TLS port are each
// refused at Open, so a gateway never starts on a store it cannot trust.
func TestRedisTLS(t *testing.T) {
	ca := testpki.MustCA(t, "Redis test CA", testpki.Options{})
	leaf := ca.MustIssue(t, testpki.Options{}, "127.0.0.1", "localhost")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := write("ca.pem", ca.PEM)
	otherCA := write("other.pem", testpki.MustCA(t, "Other CA", testpki.Options{}).PEM)
	certFile, keyFile := write("redis.crt", leaf.ChainPEM()), write("redis.key", leaf.KeyPEM)
	r := startRedisWith(t, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}, func(port int) []string {
		return []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile,
			"--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tlsURL := "rediss://" + r.addr + "/0"

	s, err := Open(ctx, Config{URL: tlsURL, Key: testKey, Prefix: "gwtls", CAFile: caFile}, nil)
	if err != nil {
		t.Fatalf("rediss:// with the right ca_file: %v", err)
	}
	defer s.Close()
	if err := s.Store(ctx, "certificates/app.test.key", []byte("sealed over TLS")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Load(ctx, "certificates/app.test.key"); err != nil || string(v) != "sealed over TLS" {
		t.Fatalf("Load over TLS: %q, %v", v, err)
	}

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ca_file of another CA", Config{URL: tlsURL, CAFile: otherCA}, "certificate"},
		{"system roots", Config{URL: tlsURL}, "certificate"},
		{"plain redis:// to the TLS port", Config{URL: "redis://" + r.addr + "/0"}, ""},
		{"ca_file without TLS", Config{URL: "redis://" + r.addr + "/0", CAFile: caFile}, "only for rediss://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Key, tc.cfg.Prefix = testKey, "gwtls"
			octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
			defer ocancel()
			s, err := Open(octx, tc.cfg, nil)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}
