//go:build benchpprof

package main

// This file is compiled only with -tags benchpprof (test/bench -profile
// builds such a binary); release builds have no profiling endpoint at all.
// GATEWAY_PPROF=127.0.0.1:PORT then serves net/http/pprof on that address,
// which must be a loopback IP: profiles expose memory contents.

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("GATEWAY_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "GATEWAY_PPROF=%q: want a loopback IP and port; profiling disabled\n", addr)
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "GATEWAY_PPROF: %v; profiling disabled\n", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go func() { _ = http.Serve(ln, mux) }()
}
