//go:build !linux

// The harness runs on Linux only: it reads /proc and starts Debian's nginx,
// haproxy and caddy.

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: the benchmark harness runs on Linux only")
	os.Exit(2)
}
