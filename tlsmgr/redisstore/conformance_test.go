package redisstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// storage is what the suite needs of a store: certmagic's contract.
type storage = certmagic.Storage

func fileStore(dir string) storage { return &certmagic.FileStorage{Path: dir} }

// TestFileConformance runs the suite on certmagic's file storage, which a
// single gateway uses: the Redis store must behave the same.
func TestFileConformance(t *testing.T) {
	dir := t.TempDir()
	runConformance(t, func(*testing.T) storage { return fileStore(dir) }, "file")
}

// runConformance checks the certmagic.Storage contract on stores made by
// open, which all see the same data (two clients of one backend).
func runConformance(t *testing.T, open func(*testing.T) storage, kind string) {
	ctx := context.Background()
	t.Run("put get delete", func(t *testing.T) {
		s := open(t)
		if err := s.Store(ctx, "a/b/c.crt", []byte("one")); err != nil {
			t.Fatal(err)
		}
		if err := s.Store(ctx, "a/b/c.crt", []byte("two")); err != nil {
			t.Fatal(err)
		}
		if v, err := open(t).Load(ctx, "a/b/c.crt"); err != nil || string(v) != "two" {
			t.Fatalf("Load from a second client = %q, %v", v, err)
		}
		if _, err := s.Load(ctx, "a/b/none"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of a missing key: %v, want fs.ErrNotExist", err)
		}
		if !s.Exists(ctx, "a/b/c.crt") || !s.Exists(ctx, "a/b") || s.Exists(ctx, "a/x") {
			t.Error("Exists is wrong for a value, a directory or a missing key")
		}
		if err := s.Delete(ctx, "a/b/c.crt"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "a/b/c.crt"); err != nil {
			t.Errorf("deleting a missing key: %v, want nil", err)
		}
		if s.Exists(ctx, "a/b/c.crt") {
			t.Error("the deleted key exists")
		}
	})
	t.Run("list stat", func(t *testing.T) {
		s := open(t)
		for _, k := range []string{"l/x.json", "l/d/y.crt", "l/d/e/z.key"} {
			if err := s.Store(ctx, k, []byte(k)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.List(ctx, "l", false)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"l/d", "l/x.json"}) {
			t.Errorf("List(l) = %v", got)
		}
		got, err = s.List(ctx, "l", true)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"l/d", "l/d/e", "l/d/e/z.key", "l/d/y.crt", "l/x.json"}) {
			t.Errorf("List(l, recursive) = %v", got)
		}
		ki, err := s.Stat(ctx, "l/d/y.crt")
		if err != nil || !ki.IsTerminal || ki.Size != int64(len("l/d/y.crt")) || time.Since(ki.Modified) > time.Minute {
			t.Errorf("Stat(value) = %+v, %v", ki, err)
		}
		if ki, err := s.Stat(ctx, "l/d"); err != nil || ki.IsTerminal {
			t.Errorf("Stat(directory) = %+v, %v", ki, err)
		}
		if _, err := s.Stat(ctx, "l/none"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat of a missing key: %v, want fs.ErrNotExist", err)
		}
		if err := s.Delete(ctx, "l"); err != nil || s.Exists(ctx, "l/d/e/z.key") {
			t.Errorf("deleting a directory left its keys: %v", err)
		}
	})
	t.Run("lock contention", func(t *testing.T) {
		a, b := open(t), open(t)
		var inside, max atomic.Int32
		var wg sync.WaitGroup
		for _, s := range []storage{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				if err := s.Lock(lctx, "contended"); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for m := max.Load(); n > m && !max.CompareAndSwap(m, n); m = max.Load() {
				}
				time.Sleep(20 * time.Millisecond) // hold it while the others try
				inside.Add(-1)
				if err := s.Unlock(ctx, "contended"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if max.Load() != 1 {
			t.Errorf("%d holders at once, want 1", max.Load())
		}
	})
	t.Run("holder killed", func(t *testing.T) {
		env := "REDISSTORE_HOLDER_DIR="
		switch s := open(t).(type) {
		case *Store:
			env = "REDISSTORE_HOLDER_REDIS=" + s.rdb.Options().Addr
		case *certmagic.FileStorage:
			env += s.Path
		}
		holder := startHolder(t, env)
		s := open(t)
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if err := s.Lock(tctx, "killed"); err == nil {
			t.Fatal("took a lock another process holds")
		}
		cancel()
		_ = holder.Process.Kill()
		_ = holder.Wait()
		// The lease (Redis) or the freshness window (files) bounds it.
		lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := s.Lock(lctx, "killed"); err != nil {
			t.Fatalf("the lock of a killed holder was never released: %v", err)
		}
		if err := s.Unlock(ctx, "killed"); err != nil {
			t.Error(err)
		}
	})
	_ = kind
}
