package browser

import (
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLimiterBucket(t *testing.T) {
	l := newLimiter(10, 5, 100, t0) // refills in 500 ms
	a := addr("192.0.2.1")
	allowed := func(at time.Time, n int) int {
		got := 0
		for range n {
			if l.allow(a, at) {
				got++
			}
		}
		return got
	}
	if got := allowed(t0, 20); got != 5 {
		t.Fatalf("burst: %d of 20 allowed at once, want 5", got)
	}
	if got := allowed(t0.Add(100*time.Millisecond), 5); got != 1 {
		t.Fatalf("100 ms later: %d allowed, want 1 (10 per second)", got)
	}
	// Another source has its own bucket.
	if !l.allow(addr("192.0.2.2"), t0.Add(100*time.Millisecond)) {
		t.Fatal("a second source was limited by the first one's use")
	}
	// One second of steady asking at 100 per second gets 10.
	got := 0
	for i := range 100 {
		if l.allow(a, t0.Add(200*time.Millisecond+time.Duration(i)*10*time.Millisecond)) {
			got++
		}
	}
	if got < 9 || got > 11 {
		t.Fatalf("steady: %d allowed in one second, want about 10", got)
	}
	// Left alone long enough, the bucket is full again, and forgotten.
	if got := allowed(t0.Add(time.Hour), 20); got != 5 {
		t.Fatalf("after an hour: %d allowed, want the full burst of 5", got)
	}
	if n := l.sources(); n != 1 {
		t.Fatalf("%d sources tracked, want 1 (the idle one forgotten)", n)
	}
}

// TestLimiterRemembersAcrossRotation: a source that emptied its bucket is
// still limited right after a rotation (it moves back from the previous
// generation); only a source idle for a whole period is forgotten.
func TestLimiterRemembersAcrossRotation(t *testing.T) {
	l := newLimiter(10, 5, 100, t0) // period 500 ms
	a, other := addr("192.0.2.1"), addr("192.0.2.9")
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for range 5 {
		l.allow(a, ms(400))
	}
	l.allow(other, ms(500)) // rotation: a moves to the previous generation
	if _, ok := l.prev[a]; !ok {
		t.Fatal("a should be in the previous generation")
	}
	// 200 ms after a emptied its bucket it has 2 tokens, not a fresh 5.
	got := 0
	for range 10 {
		if l.allow(a, ms(600)) {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("%d allowed, want 2: the rotation forgot a", got)
	}
	l.allow(other, ms(1100)) // a (used at 600) moves to prev
	l.allow(other, ms(1600)) // a, idle a whole period, is dropped
	if _, ok := l.prev[a]; ok {
		t.Fatal("a idle for a whole period is still tracked")
	}
	if _, ok := l.cur[a]; ok {
		t.Fatal("a idle for a whole period is still tracked")
	}
}

// TestLimiterBoundedTable: however many sources ask, the table holds at
// most twice maxSources, and the sources beyond share one bucket.
func TestLimiterBoundedTable(t *testing.T) {
	const maxSources = 50
	l := newLimiter(10, 2, maxSources, t0)
	allowed := 0
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		// All within one period: no rotation can make room.
		if l.allow(a, t0.Add(time.Duration(i)*time.Microsecond)) {
			allowed++
		}
		if n := l.sources(); n > 2*maxSources {
			t.Fatalf("%d sources tracked after %d, bound %d", n, i+1, 2*maxSources)
		}
	}
	// Each of the first 50 sources asks once and is answered; the other
	// 9950 share one bucket: its burst of 2 (and what it refills in 10 ms).
	if want := maxSources + 2; allowed > want+1 || allowed < want {
		t.Fatalf("%d of 10000 spoofed sources answered, want %d", allowed, want)
	}
	// Later, with rotations, memory stays bounded too.
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(a, t0.Add(time.Second+time.Duration(i)*time.Millisecond))
		if n := l.sources(); n > 2*maxSources {
			t.Fatalf("%d sources tracked, bound %d", n, 2*maxSources)
		}
	}
}

func TestSourceKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
	}
	for _, tc := range tests {
		if got := sourceKey(addr(tc.in)); got != addr(tc.want) {
			t.Errorf("sourceKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
