package browser

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver counts lookups and answers port, or err; gate, when set,
// holds every lookup until it is closed.
type fakeResolver struct {
	calls atomic.Int32
	port  atomic.Int32
	err   error
	gate  chan struct{}
	// started receives once per lookup that began (when non-nil).
	started chan struct{}
}

func (f *fakeResolver) LookupPort(ctx context.Context, host, instance string) (int, error) {
	f.calls.Add(1)
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return int(f.port.Load()), f.err
}

func TestCacheTTLAndInvalidate(t *testing.T) {
	f := &fakeResolver{}
	f.port.Store(50001)
	c := NewCache(f, time.Minute)
	now := t0
	c.now = func() time.Time { return now }
	ctx := context.Background()
	lookup := func() int {
		t.Helper()
		p, err := c.LookupPort(ctx, "DB01", "sqlexpress")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if first, second := lookup(), lookup(); first != 50001 || second != 50001 {
		t.Fatalf("ports %d then %d, want 50001 twice", first, second)
	}
	// Host and instance names are case-insensitive.
	if p, _ := c.LookupPort(ctx, "db01", "SQLEXPRESS"); p != 50001 || f.calls.Load() != 1 {
		t.Fatalf("%d lookups for one instance within the TTL, want 1", f.calls.Load())
	}
	f.port.Store(50002) // the instance restarted on another port
	now = now.Add(59 * time.Second)
	if lookup() != 50001 {
		t.Fatal("entry expired early")
	}
	now = now.Add(time.Second)
	if lookup() != 50002 || f.calls.Load() != 2 {
		t.Fatalf("after the TTL: %d lookups, want 2", f.calls.Load())
	}
	f.port.Store(50003)
	c.Invalidate("db01", "SQLExpress")
	if lookup() != 50003 || f.calls.Load() != 3 {
		t.Fatalf("after Invalidate: %d lookups, want 3", f.calls.Load())
	}
}

func TestCacheErrorsNotCached(t *testing.T) {
	f := &fakeResolver{err: ErrNoAnswer}
	c := NewCache(f, 0)
	for range 2 {
		if _, err := c.LookupPort(context.Background(), "db01", "A"); !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("err %v", err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d lookups, want 2: failures must not be cached", n)
	}
}

// TestCacheSharesLookups: concurrent misses for one instance make one
// lookup; a waiter whose leader was canceled looks up itself.
func TestCacheSharesLookups(t *testing.T) {
	f := &fakeResolver{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	f.port.Store(50001)
	c := NewCache(f, time.Minute)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			p, err := c.LookupPort(context.Background(), "db01", "A")
			if err == nil && p != 50001 {
				err = errors.New("wrong port")
			}
			errs <- err
		})
	}
	<-f.started
	// Every goroutine is waiting on the one lookup or about to; release it.
	close(f.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if calls := f.calls.Load(); calls != 1 {
		t.Fatalf("%d lookups for %d concurrent misses", calls, n)
	}

	// A leader canceled mid-lookup: the other caller (whether it was
	// already waiting on the leader or not) gets its port from a lookup of
	// its own.
	g := &fakeResolver{gate: make(chan struct{}), started: make(chan struct{}, 100)}
	g.port.Store(50002)
	c = NewCache(g, time.Minute)
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() {
		_, err := c.LookupPort(leaderCtx, "db01", "A")
		leaderDone <- err
	}()
	<-g.started
	waiterDone := make(chan int, 1)
	go func() {
		p, _ := c.LookupPort(context.Background(), "db01", "A")
		waiterDone <- p
	}()
	cancelLeader()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	<-g.started // the waiter's own lookup
	close(g.gate)
	if p := <-waiterDone; p != 50002 {
		t.Fatalf("waiter got %d", p)
	}
}
