package configs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Runtime tunes the Go runtime's garbage collector, as the GOGC and
// GOMEMLIMIT environment variables would (README, "Performance").
type Runtime struct {
	// GOGC is the collector's target heap growth in percent (Go's default
	// 100); lower trades CPU for memory. -1 turns the proportional target
	// off, leaving MemoryLimit alone to trigger collections; 0 (a Config
	// built in code) means Go's default.
	GOGC int `mapstructure:"gogc"`
	// MemoryLimit is a soft limit on the memory the runtime uses, in
	// GOMEMLIMIT's syntax (bytes, or a number with B, KiB, MiB, GiB or
	// TiB), e.g. 512MiB; "" sets none.
	MemoryLimit string `mapstructure:"memory_limit"`
}

// DefaultGOGC is runtime.gogc's default, Go's own.
const DefaultGOGC = 100

// Percent is GOGC with 0 read as the default.
func (r Runtime) Percent() int {
	if r.GOGC == 0 {
		return DefaultGOGC
	}
	return r.GOGC
}

// MemoryLimitBytes is MemoryLimit in bytes; math.MaxInt64 (no limit) when
// it is "".
func (r Runtime) MemoryLimitBytes() (int64, error) {
	s := strings.TrimSpace(r.MemoryLimit)
	if s == "" {
		return math.MaxInt64, nil
	}
	num := strings.TrimRightFunc(s, func(c rune) bool { return c < '0' || c > '9' })
	unit := s[len(num):]
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if mult == 0 || err != nil || num == "" {
		return 0, fmt.Errorf("%q: use a number of bytes with B, KiB, MiB, GiB or TiB, e.g. 512MiB", r.MemoryLimit)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", r.MemoryLimit)
	}
	return n * mult, nil
}

func (r *Runtime) validate(ps *problems) {
	if r.GOGC < -1 || r.GOGC > 10000 {
		ps.add("runtime.gogc", "%d: use a percentage from 1 to 10000 (Go's default is 100), or -1 to collect only at runtime.memory_limit", r.GOGC)
	}
	limit, err := r.MemoryLimitBytes()
	switch {
	case err != nil:
		ps.add("runtime.memory_limit", "%v", err)
	case limit < 64<<20:
		ps.add("runtime.memory_limit", "%s is below 64MiB, too little for the gateway to run in", r.MemoryLimit)
	}
	if r.GOGC == -1 && strings.TrimSpace(r.MemoryLimit) == "" {
		ps.add("runtime.gogc", "-1 turns the collector's growth target off; set runtime.memory_limit too, or the heap grows without bound")
	}
}
