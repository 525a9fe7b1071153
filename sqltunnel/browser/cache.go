package browser

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// DefaultCacheTTL is how long a Cache keeps a port. Named instances usually
// keep their port; one on dynamic ports gets a new one when it restarts,
// which a dial failure and Invalidate catch before the TTL does.
const DefaultCacheTTL = time.Minute

// PortResolver looks up the TCP port of a named instance; *Resolver
// implements it. LookupPort must honour ctx.
type PortResolver interface {
	LookupPort(ctx context.Context, host, instance string) (int, error)
}

// Cache remembers the ports of named instances for a TTL, so that every
// upstream connection to host\INSTANCE does not cost a Browser round trip.
// Concurrent misses for the same instance share one lookup. Failures are
// not cached. It holds one entry per host\instance asked for, which for the
// gateway are the configured upstreams. Its methods are safe for concurrent
// use.
type Cache struct {
	r   PortResolver
	ttl time.Duration
	now func() time.Time

	mu       sync.Mutex
	entries  map[cacheKey]cacheEntry
	inflight map[cacheKey]*lookupCall
}

type cacheKey struct{ host, instance string }

type cacheEntry struct {
	port    int
	expires time.Time
}

type lookupCall struct {
	done chan struct{}
	port int
	err  error
}

// NewCache returns a cache in front of r (nil means the zero Resolver)
// keeping ports for ttl (0 or negative means DefaultCacheTTL).
func NewCache(r PortResolver, ttl time.Duration) *Cache {
	if r == nil {
		r = &Resolver{}
	}
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	return &Cache{r: r, ttl: ttl, now: time.Now, entries: map[cacheKey]cacheEntry{}, inflight: map[cacheKey]*lookupCall{}}
}

func keyOf(host, instance string) cacheKey {
	return cacheKey{strings.ToLower(host), strings.ToUpper(instance)}
}

// LookupPort returns the cached port of host\instance, or looks it up.
func (c *Cache) LookupPort(ctx context.Context, host, instance string) (int, error) {
	k := keyOf(host, instance)
	for {
		c.mu.Lock()
		if e, ok := c.entries[k]; ok && c.now().Before(e.expires) {
			c.mu.Unlock()
			return e.port, nil
		}
		call, shared := c.inflight[k]
		if !shared {
			call = &lookupCall{done: make(chan struct{})}
			c.inflight[k] = call
		}
		c.mu.Unlock()

		if !shared {
			call.port, call.err = c.r.LookupPort(ctx, host, instance)
			c.mu.Lock()
			delete(c.inflight, k)
			if call.err == nil {
				c.entries[k] = cacheEntry{port: call.port, expires: c.now().Add(c.ttl)}
			}
			c.mu.Unlock()
			close(call.done)
			return call.port, call.err
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
		// The lookup we waited for was canceled by its own caller: that
		// says nothing about this caller's, so try again.
		if errors.Is(call.err, context.Canceled) && ctx.Err() == nil {
			continue
		}
		return call.port, call.err
	}
}

// Invalidate forgets the port of host\instance, so that the next
// LookupPort asks the Browser again: call it when a dial to the cached port
// fails (the instance may have restarted on another port).
func (c *Cache) Invalidate(host, instance string) {
	c.mu.Lock()
	delete(c.entries, keyOf(host, instance))
	c.mu.Unlock()
}
