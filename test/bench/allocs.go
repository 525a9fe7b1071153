//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

var allocsPerOp = regexp.MustCompile(`BenchmarkProxiedRequest\S*\s+\d+\s+[0-9.]+ ns/op\s+\d+ B/op\s+(\d+) allocs/op`)

// proxiedAllocs runs the Go benchmark that counts the gateway's own
// allocations per proxied request (proxy.BenchmarkProxiedRequest: a client
// and an upstream that allocate nothing, the access log and metrics on)
// and returns its allocs/op. The figure does not depend on the machine's
// load, unlike the timings around it.
func proxiedAllocs(ctx context.Context) (sample, error) {
	root, err := moduleRoot()
	if err != nil {
		return sample{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkProxiedRequest$",
		"-benchmem", "-benchtime", "20000x", "./proxy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return sample{}, fmt.Errorf("go test -bench BenchmarkProxiedRequest: %w\n%s", err, out)
	}
	m := allocsPerOp.FindSubmatch(out)
	if m == nil {
		return sample{}, fmt.Errorf("no allocs/op in:\n%s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return sample{value: v}, nil
}
