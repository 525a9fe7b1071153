//go:build linux

package main

// metricTargets are the targets of each group of metrics.
type metricTargets struct {
	h1, h2, http, idle, select1, sql []string
}

// declareMetrics lists the figures in report order with their goals: the
// performance issue's targets (round 2), and round 1's where round 2 set
// none.
func declareMetrics(r *results, tests map[string]bool, ts metricTargets) {
	type decl struct {
		test string
		m    metric
		ts   []string
	}
	for _, d := range []decl{
		{"allocs", metric{ID: "allocs", Title: "allocations per proxied request (Go benchmark, gateway's own)", Unit: "allocs", Goals: []goal{{"", 60}}}, []string{"gateway"}},
		{"h1", metric{ID: "h1_keepalive", Title: "HTTP/1.1 keep-alive, 64 B", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 0.75}}}, ts.h1},
		{"h2", metric{ID: "h2", Title: "HTTP/2, 10 streams/conn, 64 B", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 0.6}}}, ts.h2},
		{"handshake", metric{ID: "h1_handshake", Title: "new connection per request (wrk: TLS sessions resumed)", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 1.0}}}, ts.http},
		{"fullhandshake", metric{ID: "full_handshake", Title: "full TLS handshake per request (Go client)", Unit: "req/s", Higher: true, Goals: []goal{{"nginx", 1.0}}}, ts.http},
		{"download", metric{ID: "download", Title: "download", Unit: "MB/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, ts.http},
		{"idle", metric{ID: "idle_conn_mem", Title: "memory per idle TLS connection", Unit: "KiB", Goals: []goal{{"", 30}}}, ts.idle},
		{"select1", metric{ID: "select1_p50", Title: "SELECT 1 latency p50", Unit: "µs", Goals: []goal{{"direct", 1.25}}}, ts.select1},
		{"select1", metric{ID: "select1_p99", Title: "SELECT 1 latency p99", Unit: "µs"}, ts.select1},
		{"logins", metric{ID: "logins_seq", Title: "logins (login, SELECT 1, close), 1 at a time", Unit: "logins/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, ts.sql},
		{"logins", metric{ID: "logins_par4", Title: "logins, 4 in parallel", Unit: "logins/s", Higher: true, Goals: []goal{{"direct", 0.8}}}, ts.sql},
		{"bulk", metric{ID: "bulk", Title: "rowset, VARBINARY(8000) rows, 4096-byte packets (driver default)", Unit: "MB/s", Higher: true, Goals: []goal{{"direct", 0.85}}}, ts.sql},
		{"bulk", metric{ID: "bulk_16k", Title: "rowset, 16383-byte packets (SQL Server's maximum with encryption)", Unit: "MB/s", Higher: true}, ts.sql},
		{"sessions", metric{ID: "session_mem", Title: "memory per idle SQL session", Unit: "KiB", Goals: []goal{{"", 64}}}, []string{"gateway"}},
	} {
		if tests[d.test] {
			r.declare(d.m, d.ts)
		}
	}
}
