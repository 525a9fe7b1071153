package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found (CI is set: install the Debian package redis-server)")
		}
		t.Skip("redis-server not found: install the Debian package redis-server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "yes")
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
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer on %s:\n%s", s.addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
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
