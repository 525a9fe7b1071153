//go:build linux

package main

// declareMetrics lists the figures in report order with the goals.
func declareMetrics(r *results, tests map[string]bool, httpTargets, sqlTargets []string) {
	type decl struct {
		test string
		m    metric
		ts   []string
	}
	for _, d := range []decl{
		{"h1", metric{ID: "h1_keepalive", Title: "HTTP/1.1 keep-alive, 64 B", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 1.0}, {"caddy", 1.2}}}, httpTargets},
		{"h2", metric{ID: "h2", Title: "HTTP/2, 10 streams/conn, 64 B", Unit: "req/s", Higher: true, Goals: []goal{{"caddy", 1.0}}}, httpTargets},
		{"handshake", metric{ID: "h1_handshake", Title: "new connection per request (wrk: TLS sessions resumed)", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 1.0}}}, httpTargets},
		{"fullhandshake", metric{ID: "full_handshake", Title: "full TLS handshake per request (Go client)", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 1.0}}}, httpTargets},
		{"download", metric{ID: "download", Title: "download", Unit: "MB/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, httpTargets},
		{"idle", metric{ID: "idle_conn_mem", Title: "memory per idle TLS connection", Unit: "KiB", Goals: []goal{{"", 30}}}, httpTargets},
		{"select1", metric{ID: "select1_p50", Title: "SELECT 1 latency p50", Unit: "µs", Goals: []goal{{"direct", 1.15}}}, sqlTargets},
		{"select1", metric{ID: "select1_p99", Title: "SELECT 1 latency p99", Unit: "µs"}, sqlTargets},
		{"logins", metric{ID: "logins_seq", Title: "logins (login, SELECT 1, close), 1 at a time", Unit: "logins/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, sqlTargets},
		{"logins", metric{ID: "logins_par4", Title: "logins, 4 in parallel", Unit: "logins/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, sqlTargets},
		{"bulk", metric{ID: "bulk", Title: "rowset, VARBINARY(8000) rows, 4096-byte packets (driver default)", Unit: "MB/s", Higher: true, Goals: []goal{{"direct", 0.9}}}, sqlTargets},
		{"bulk", metric{ID: "bulk_16k", Title: "rowset, 16383-byte packets (SQL Server's maximum with encryption)", Unit: "MB/s", Higher: true, Goals: []goal{{"direct", 0.9}}}, sqlTargets},
		{"sessions", metric{ID: "session_mem", Title: "memory per idle SQL session", Unit: "KiB", Goals: []goal{{"", 64}}}, []string{"gateway"}},
	} {
		if tests[d.test] {
			r.declare(d.m, d.ts)
		}
	}
}
