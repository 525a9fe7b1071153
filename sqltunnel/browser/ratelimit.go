package browser

import (
	"net/netip"
	"time"
)

// limiter is a token bucket per source address with a bounded table of
// sources. It is not safe for concurrent use: the responder's read loop owns
// it.
//
// The table has two generations. A bucket left alone for period (the time
// it takes to refill from empty) is full again, exactly as if the source
// had never been seen, so it can be forgotten. Every period the current
// generation becomes the previous one and the previous one is dropped; a
// source seen again is moved back into the current generation. Each
// generation holds at most maxSources entries, so the table never exceeds
// twice that however many addresses an attacker spoofs; sources that find
// the current generation full share one overflow bucket, which keeps the
// total reply rate bounded too: at most (2*maxSources + 1) buckets' worth.
type limiter struct {
	rate       float64 // tokens per second
	burst      float64
	maxSources int
	period     time.Duration

	cur, prev map[netip.Addr]bucket
	rotated   time.Time
	overflow  bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, maxSources int, now time.Time) *limiter {
	period := time.Duration(float64(burst) / rate * float64(time.Second))
	return &limiter{
		rate: rate, burst: float64(burst), maxSources: maxSources, period: max(period, time.Millisecond),
		cur: map[netip.Addr]bucket{}, prev: map[netip.Addr]bucket{}, rotated: now,
		overflow: bucket{tokens: float64(burst), last: now},
	}
}

// sourceKey is what a source is limited by: its IPv4 address, or the /64
// of an IPv6 address (one host commonly holds a whole /64).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// allow takes a token from key's bucket at time now and reports whether
// there was one.
func (l *limiter) allow(key netip.Addr, now time.Time) bool {
	if d := now.Sub(l.rotated); d >= l.period {
		// Every entry of cur was last touched less than one period after
		// the last rotation (a later touch would have rotated first), so
		// after two periods none is needed.
		if d >= 2*l.period {
			clear(l.cur)
		}
		l.prev, l.cur = l.cur, l.prev
		clear(l.cur)
		l.rotated = now
	}
	if b, ok := l.cur[key]; ok {
		ok := b.take(now, l.rate, l.burst)
		l.cur[key] = b
		return ok
	}
	b, seen := l.prev[key]
	if !seen {
		b = bucket{tokens: l.burst, last: now}
	}
	switch {
	case len(l.cur) < l.maxSources:
		delete(l.prev, key)
		ok := b.take(now, l.rate, l.burst)
		l.cur[key] = b
		return ok
	case seen:
		// cur is full: keep the source where it is.
		ok := b.take(now, l.rate, l.burst)
		l.prev[key] = b
		return ok
	default:
		return l.overflow.take(now, l.rate, l.burst)
	}
}

// sources is the number of source addresses the table holds.
func (l *limiter) sources() int { return len(l.cur) + len(l.prev) }

// take refills the bucket for the time since its last use and takes a token.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
