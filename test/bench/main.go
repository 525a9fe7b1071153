//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

type options struct {
	quick         bool
	rounds        int
	duration      time.Duration
	conns         int
	idleConns     int
	sessions      int
	downloadBytes int64
	bulkBytes     int64
	queries       int
	settle        time.Duration
	peers         string
	tests         string
	jsonOut       string
	mdOut         string
	gateway       string
	maxTime       time.Duration
	keep          bool
	profileDir    string
	memRounds     int
	svgOut        string
	pgoAB         string
	scaleConns    string
	scaleSessions string
}

const allTests = "allocs,h1,h2,handshake,fullhandshake,download,idle,select1,logins,bulk,sessions,scale"

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench "+role+":", err)
			os.Exit(1)
		}
		return
	}
	var o options
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.BoolVar(&o.quick, "quick", false, "short run (~3 min): 1 round, 3 s loads, fewer connections, smaller transfers")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; medians are reported")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each timed load (wrk, h2load, logins)")
	fs.IntVar(&o.conns, "conns", 50, "concurrent connections of wrk and h2load")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "idle TLS connections for the memory test")
	fs.IntVar(&o.sessions, "sessions", 1000, "idle SQL sessions for the memory test (the listener's cap is 1000)")
	fs.Int64Var(&o.downloadBytes, "download-bytes", 1<<30, "size of the download test")
	fs.Int64Var(&o.bulkBytes, "bulk-bytes", 256<<20, "size of the TDS rowset test")
	fs.IntVar(&o.queries, "queries", 2000, "SELECT 1 round trips for the latency test")
	fs.IntVar(&o.memRounds, "mem-rounds", 2, "rounds that include the memory tests (their figures vary little; each costs ~2 min)")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait before reading a process's memory")
	fs.StringVar(&o.peers, "peers", "nginx,haproxy,caddy", "peer proxies to compare with (missing ones are skipped)")
	fs.StringVar(&o.tests, "tests", allTests, "tests to run")
	fs.StringVar(&o.jsonOut, "json", "", "write all samples, medians and ratios as JSON to this file")
	fs.StringVar(&o.mdOut, "md", "", "also write the Markdown report to this file")
	fs.StringVar(&o.gateway, "gateway", "", "gateway binary to measure (default: build ./cmd/gateway)")
	fs.DurationVar(&o.maxTime, "max-time", 15*time.Minute, "bound on the whole run; what was measured by then is reported")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configurations, certificate)")
	fs.StringVar(&o.profileDir, "profile", "", "save CPU profiles of the gateway under load in this directory")
	fs.StringVar(&o.svgOut, "svg", "", "draw the scaling curves (test scale) as SVG to this file")
	fs.StringVar(&o.pgoAB, "pgo-ab", "auto", "also measure a build without profile-guided optimisation (gateway-nopgo) in h1, h2 and select1: on, off, or auto (on when cmd/gateway/default.pgo exists)")
	fs.StringVar(&o.scaleConns, "scale-conns", "64,256,1024", "client connections of the HTTP scaling test")
	fs.StringVar(&o.scaleSessions, "scale-sessions", "1,16,64", "concurrent sessions of the TDS scaling test")
	_ = fs.Parse(os.Args[1:])
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":         func() { o.rounds = 1 },
			"duration":       func() { o.duration = 3 * time.Second },
			"idle-conns":     func() { o.idleConns = 2000 },
			"sessions":       func() { o.sessions = 200 },
			"download-bytes": func() { o.downloadBytes = 256 << 20 },
			"bulk-bytes":     func() { o.bulkBytes = 64 << 20 },
			"queries":        func() { o.queries = 500 },
			"settle":         func() { o.settle = time.Second },
			"max-time":       func() { o.maxTime = 6 * time.Minute },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	for _, tool := range []string{"wrk", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run `make bench-deps` (or .ci/install-bench-deps)", tool)
		}
	}
	maxFD, err := raiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising the open-file limit: %w", err)
	}
	if need := uint64(o.idleConns + 1000); maxFD < need {
		logf("open-file limit %d: idle connections cut to %d", maxFD, maxFD-1000)
		o.idleConns = int(maxFD) - 1000
	}
	dir, err := os.MkdirTemp("", "gateway-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("work directory %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{dir: dir, maxFD: maxFD}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		port, err := testkit.FreePort()
		if err != nil {
			return err
		}
		b.pprof = fmt.Sprintf("127.0.0.1:%d", port)
		if port, err = testkit.FreePort(); err != nil {
			return err
		}
		b.pprof2 = fmt.Sprintf("127.0.0.1:%d", port)
		b.profileDir = o.profileDir
	}
	if b.certs, err = writeCerts(dir); err != nil {
		return err
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	build := func(out string, extra ...string) error {
		args := append([]string{"build", "-o", out}, extra...)
		if o.profileDir != "" {
			args = append(args, "-tags", "benchpprof")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/gateway")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the gateway: %w\n%s", err, out)
		}
		return nil
	}
	if b.gateway = o.gateway; b.gateway == "" {
		b.gateway = filepath.Join(dir, "gateway")
		logf("building the gateway")
		if err := build(b.gateway); err != nil {
			return err
		}
	}
	_, pgoErr := os.Stat(filepath.Join(root, "cmd", "gateway", "default.pgo"))
	if o.pgoAB == "on" || (o.pgoAB == "auto" && pgoErr == nil && o.gateway == "") {
		b.gatewayNoPGO = filepath.Join(dir, "gateway-nopgo")
		logf("building the gateway without profile-guided optimisation")
		if err := build(b.gatewayNoPGO, "-pgo=off"); err != nil {
			return err
		}
	}
	var peerNames []string
	for _, p := range strings.Split(o.peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			peerNames = append(peerNames, p)
		}
	}
	b.peers = findPeers(peerNames)
	for _, p := range peerNames {
		if b.peers[p] == "" {
			logf("%s not installed: skipped (make bench-deps installs it)", p)
		}
	}
	peerNames = slices.DeleteFunc(peerNames, func(p string) bool { return b.peers[p] == "" })
	tests := map[string]bool{}
	for _, t := range strings.Split(o.tests, ",") {
		tests[strings.TrimSpace(t)] = true
	}

	backend, facts, err := b.startRole(ctx, "backend")
	if err != nil {
		return err
	}
	defer backend.stop()
	b.backend, b.direct = facts["http"], facts["https"]
	double, facts, err := b.startRole(ctx, "tds")
	if err != nil {
		return err
	}
	defer double.stop()
	b.tds = facts["tds"]
	// The processes whose memory the scaling test reads for "direct".
	directPID := map[string]int{"http": backend.pid(), "tds": double.pid()}

	tlsCfg, err := clientTLS(b.certs.root)
	if err != nil {
		return err
	}
	r := newResults()
	httpTargets := append(append([]string{"gateway"}, peerNames...), "direct")
	sqlTargets := []string{"gateway", "direct"}
	// The gateway's variants: GOGC 50 beside the default where memory and
	// its CPU cost show, the build without PGO where the hot paths do.
	variants := []string{gatewayGOGC50}
	pgoTargets := func(ts []string) []string { return ts }
	if b.gatewayNoPGO != "" {
		variants = append(variants, gatewayNoPGO)
		pgoTargets = func(ts []string) []string { return slices.Insert(slices.Clone(ts), 1, gatewayNoPGO) }
	}
	gogcTargets := func(ts []string) []string { return slices.Insert(slices.Clone(ts), 1, gatewayGOGC50) }
	declareMetrics(r, tests, metricTargets{
		h1: gogcTargets(pgoTargets(httpTargets)), h2: pgoTargets(httpTargets), http: httpTargets,
		idle: gogcTargets(httpTargets), select1: pgoTargets(sqlTargets), sql: sqlTargets,
	})

	// The long-running fronts for the throughput tests.
	servers := map[string]*server{"direct": {name: "direct", addr: b.direct}}
	var tlsGroups map[string]string
	sqlAddrs := map[string]string{"direct": b.tds}
	needHTTP := tests["h1"] || tests["h2"] || tests["handshake"] || tests["fullhandshake"] || tests["download"] || tests["scale"]
	needSQL := tests["select1"] || tests["logins"] || tests["bulk"] || tests["scale"]
	if needHTTP || needSQL {
		for _, name := range append([]string{"gateway"}, variants...) {
			gw, ready, err := b.startGatewayAs(ctx, name, true, true)
			if err != nil {
				return err
			}
			defer gw.stop()
			servers[name] = &server{name: name, addr: ready["https_addr"], proc: gw}
			sqlAddrs[name] = ready["sql_addr"]
		}
	}
	if needHTTP {
		for _, p := range peerNames {
			s, err := b.startServer(ctx, p)
			if err != nil {
				return err
			}
			defer s.stop()
			servers[p] = s
		}
		// Every front serves the same certificate and the same backend.
		groups := map[string]string{}
		for _, t := range append(slices.Clone(httpTargets), variants...) {
			if _, err := download(ctx, tlsCfg, servers[t].url("/big"), 1<<20, 30*time.Second); err != nil {
				return fmt.Errorf("%s does not work: %w", t, err)
			}
			groups[t] = negotiated(ctx, tlsCfg, servers[t].addr)
		}
		tlsGroups = groups
		logf("TLS negotiated with a Go client: %v", groups)
	}

	facts2 := runFacts(o, b, peerNames)
	if tlsGroups != nil {
		facts2["tls_with_go_client"] = tlsGroups
	}
	logf("measuring: %d round(s), %s loads; targets %s (and %s)", o.rounds, o.duration, strings.Join(httpTargets, ", "), strings.Join(variants, ", "))
	var scale []scalePoint
	for round := range o.rounds {
		if ctx.Err() != nil {
			break
		}
		rot := func(ts []string) []string { // alternate who goes first
			k := round % len(ts)
			return append(slices.Clone(ts[k:]), ts[:k]...)
		}
		measure := func(test, id string, targets []string, f func(t string) (sample, error)) {
			if !tests[test] || ((test == "idle" || test == "sessions") && round >= o.memRounds) || (test == "allocs" && round > 0) {
				return
			}
			if targets == nil {
				targets = r.targets[id]
			}
			for _, t := range rot(targets) {
				if ctx.Err() != nil {
					return
				}
				var prof chan error
				if t == "gateway" && b.pprof != "" && round == 0 && test != "idle" && test != "sessions" { // memory tests use fresh gateways
					prof = make(chan error, 1)
					go func() { prof <- b.cpuProfile(ctx, filepath.Join(o.profileDir, id+".pprof"), o.duration) }()
				}
				s, err := f(t)
				if prof != nil {
					if err := <-prof; err != nil {
						logf("profile of %s: %v", id, err)
					}
				}
				if err != nil {
					logf("round %d %s %s: %v", round+1, id, t, err)
					continue
				}
				r.add(id, t, s)
				logf("round %d %-14s %-8s %10s %s", round+1, id, t, fmtValue(s.value), strings.TrimSpace(s.note+" "+s.info))
			}
		}
		// upstreamConns wraps a load with the count of connections the
		// backend accepted meanwhile: how well each proxy reuses them.
		upstreamConns := func(t string, load func() (sample, error)) (sample, error) {
			before := backendStats(ctx, tlsCfg, b.direct)
			s, err := load()
			after := backendStats(ctx, tlsCfg, b.direct)
			if err == nil && t != "direct" && before != nil && after != nil {
				s.info = strings.TrimSpace(s.info + fmt.Sprintf(" %d upstream connections", after["upstream_conns"]-before["upstream_conns"]))
			}
			return s, err
		}
		measure("h1", "h1_keepalive", nil, func(t string) (sample, error) {
			return upstreamConns(t, func() (sample, error) { return wrk(ctx, servers[t].url("/"), o.duration, o.conns) })
		})
		measure("h2", "h2", nil, func(t string) (sample, error) {
			return upstreamConns(t, func() (sample, error) { return h2load(ctx, servers[t].url("/"), o.duration, o.conns) })
		})
		measure("handshake", "h1_handshake", httpTargets, func(t string) (sample, error) {
			before := backendStats(ctx, tlsCfg, b.direct)
			s, err := wrk(ctx, servers[t].url("/"), o.duration, o.conns, "Connection: close")
			if t == "direct" && err == nil {
				if after := backendStats(ctx, tlsCfg, b.direct); after != nil && before != nil {
					full, res := after["full"]-before["full"], after["resumed"]-before["resumed"]
					s.note = strings.TrimSpace(s.note + fmt.Sprintf(" wrk resumed %d of %d TLS sessions", res, full+res))
				}
			}
			return s, err
		})
		measure("fullhandshake", "full_handshake", httpTargets, func(t string) (sample, error) {
			return fullHandshakes(ctx, servers[t].addr, o.duration, o.conns)
		})
		measure("download", "download", httpTargets, func(t string) (sample, error) {
			return download(ctx, tlsCfg, servers[t].url("/big"), o.downloadBytes, 5*time.Minute)
		})
		measure("idle", "idle_conn_mem", nil, func(t string) (sample, error) {
			s, err := b.startServer(ctx, t) // fresh process: no heap left over from the loads
			if err != nil {
				return sample{}, err
			}
			defer s.stop()
			var step func(n int, rssMiB, perConnKiB float64)
			if round == 0 && tests["scale"] {
				// The first round's steps are the idle scaling curve.
				step = func(n int, rssMiB, perConnKiB float64) {
					scale = append(scale, scalePoint{Test: "scale_idle", Target: t, Load: n, RSSMiB: rssMiB, Rate: perConnKiB})
				}
			}
			return b.idleConns(ctx, s, tlsCfg, o.idleConns, o.settle, step)
		})
		measure("select1", "select1_p50", nil, func(t string) (sample, error) {
			p50, p99, err := b.latency(ctx, sqlAddrs[t], o.queries)
			if err == nil {
				r.add("select1_p99", t, p99)
			}
			return p50, err
		})
		measure("logins", "logins_seq", sqlTargets, func(t string) (sample, error) {
			return b.logins(ctx, sqlAddrs[t], o.duration, 1)
		})
		measure("logins", "logins_par4", sqlTargets, func(t string) (sample, error) {
			return b.logins(ctx, sqlAddrs[t], o.duration, 4)
		})
		measure("bulk", "bulk", sqlTargets, func(t string) (sample, error) {
			return b.bulk(ctx, sqlAddrs[t], o.bulkBytes, 0, 5*time.Minute)
		})
		measure("bulk", "bulk_16k", sqlTargets, func(t string) (sample, error) {
			return b.bulk(ctx, sqlAddrs[t], o.bulkBytes, 16383, 5*time.Minute)
		})
		measure("sessions", "session_mem", []string{"gateway"}, func(string) (sample, error) {
			return b.sessions(ctx, o.sessions, o.settle)
		})
		measure("allocs", "allocs", []string{"gateway"}, func(string) (sample, error) {
			return proxiedAllocs(ctx)
		})
		if round == 0 && tests["scale"] && ctx.Err() == nil {
			scale = append(scale, b.scaleRuns(ctx, o, servers, sqlAddrs, httpTargets, sqlTargets, directPID)...)
		}
	}
	if ctx.Err() != nil {
		logf("stopped early (%v): reporting what was measured", context.Cause(ctx))
	}
	facts2["elapsed"] = time.Since(start).Round(time.Second).String()
	header := fmt.Sprintf("Gateway benchmark, %s, %d round(s) of %s loads (medians; ratios are gateway ÷ target).\n"+
		"Machine: %d CPUs shared by load generators, backends and the proxy under test; %s.\n",
		time.Now().Format("2006-01-02"), o.rounds, o.duration, runtime.NumCPU(), facts2["versions"])
	md := r.markdown(header) + scaleMarkdown(scale) + r.targetsSummary()
	fmt.Fprint(stdout, md)
	if o.svgOut != "" && len(scale) > 0 {
		if err := writeScaleSVG(o.svgOut, scale); err != nil {
			return err
		}
		logf("wrote %s", o.svgOut)
	}
	if o.mdOut != "" {
		if err := os.WriteFile(o.mdOut, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if o.jsonOut != "" {
		facts2["scaling"] = scale
		if err := r.writeJSON(o.jsonOut, facts2); err != nil {
			return err
		}
		logf("wrote %s", o.jsonOut)
	}
	return nil
}

// backendStats reads the backend's counters (TLS handshakes, upstream
// connections); nil if unavailable.
func backendStats(ctx context.Context, tlsCfg *tls.Config, direct string) map[string]int64 {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+direct+"/stats", nil)
	if err != nil {
		return nil
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st map[string]int64
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st
}

// negotiated is the TLS version and key exchange a default Go client gets
// from addr (each server picks by its own preference).
func negotiated(ctx context.Context, tlsCfg *tls.Config, addr string) string {
	d := &tls.Dialer{Config: tlsCfg}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	return tls.VersionName(cs.Version) + " " + cs.CurveID.String()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the harness inside the gateway module (go run ./test/bench)")
	}
	return filepath.Dir(mod), nil
}

// runFacts describes the run for the JSON output and the report header.
func runFacts(o options, b *bench, peers []string) map[string]any {
	versions := []string{runtime.Version()}
	for _, p := range peers {
		var cmd *exec.Cmd
		switch p {
		case "nginx":
			cmd = exec.Command(b.peers[p], "-v")
		case "haproxy":
			cmd = exec.Command(b.peers[p], "-v")
		case "caddy":
			cmd = exec.Command(b.peers[p], "version")
		}
		if out, err := cmd.CombinedOutput(); err == nil {
			line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
			if !strings.Contains(strings.ToLower(line), p) {
				line = p + " " + line
			}
			versions = append(versions, line)
		}
	}
	return map[string]any{
		"cpus": runtime.NumCPU(), "rounds": o.rounds, "duration": o.duration.String(),
		"conns": o.conns, "idle_conns": o.idleConns, "sessions": o.sessions,
		"download_bytes": o.downloadBytes, "bulk_bytes": o.bulkBytes, "queries": o.queries,
		"versions": strings.Join(versions, "; "),
	}
}
