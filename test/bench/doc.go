// Command bench measures the gateway side by side with nginx, HAProxy and
// Caddy (HTTPS front) and with a direct TLS connection to the SQL Server
// double (TDS), on this machine, against the same backends and the same
// ECDSA P-256 certificate, and prints a Markdown table of medians and
// ratios (gateway ÷ peer). The targets of each test are measured one after
// another, in an order that rotates from round to round, so that a noisy
// machine affects all of them alike; the ratios are what to read, not the
// absolute figures.
//
//	go run ./test/bench [-quick] [-rounds N] [-duration D] [-json FILE] [-md FILE]
//
// It needs wrk and h2load; nginx, haproxy and caddy are used when installed
// (`make bench-deps`, or .ci/install-bench-deps). Everything listens on
// 127.0.0.1; every load is bounded in time, and so is the whole run
// (-max-time).
//
// What is measured, per target (medians of the rounds):
//
//   - HTTP/1.1 keep-alive requests/s (wrk -t2 -c50), HTTP/2 requests/s
//     (h2load -c50 -m10), requests/s with a new connection each (wrk with
//     Connection: close; wrk resumes TLS sessions) and with a full TLS
//     handshake each (a Go client without a session cache), and a 1 GiB
//     download in MB/s; targets gateway, nginx, haproxy, caddy and the
//     backend itself over TLS ("direct", the ceiling);
//   - resident memory per idle keep-alive TLS connection at 10,000
//     connections, on a fresh process of each target;
//   - TDS with go-mssqldb (encrypt=true, certificate verified) through the
//     gateway and directly to the SQL Server double with forced
//     encryption: SELECT 1 latency p50/p99, logins per second (one at a
//     time and four in parallel), a 256 MiB rowset in MB/s, and the
//     gateway's resident memory per idle session at 1,000 sessions.
//
// Profiling: -profile DIR builds the gateway with -tags benchpprof (a
// net/http/pprof listener on loopback, absent from release builds) and saves
// a CPU profile of the gateway during each of its timed loads as
// DIR/<test>.pprof, and a heap profile of the fresh gateway of each memory
// test as DIR/<test>.heap.pprof, for `go tool pprof`.
package main
