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
}

const allTests = "h1,h2,handshake,fullhandshake,download,idle,select1,logins,bulk,sessions"

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
		port, err := freePort()
		if err != nil {
			return err
		}
		b.pprof = fmt.Sprintf("127.0.0.1:%d", port)
		if port, err = freePort(); err != nil {
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
	if b.gateway = o.gateway; b.gateway == "" {
		b.gateway = filepath.Join(dir, "gateway")
		logf("building the gateway")
		args := []string{"build", "-o", b.gateway}
		if o.profileDir != "" {
			args = append(args, "-tags", "benchpprof")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/gateway")...)
		cmd.Dir, err = moduleRoot()
		if err != nil {
			return err
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the gateway: %w\n%s", err, out)
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

	tlsCfg, err := clientTLS(b.certs.root)
	if err != nil {
		return err
	}
	r := newResults()
	httpTargets := append(append([]string{"gateway"}, peerNames...), "direct")
	sqlTargets := []string{"gateway", "direct"}
	declareMetrics(r, tests, httpTargets, sqlTargets)

	// The long-running fronts for the throughput tests.
	servers := map[string]*server{"direct": {name: "direct", addr: b.direct}}
	var tlsGroups map[string]string
	var sqlAddr string
	needHTTP := tests["h1"] || tests["h2"] || tests["handshake"] || tests["fullhandshake"] || tests["download"]
	needSQL := tests["select1"] || tests["logins"] || tests["bulk"]
	if needHTTP || needSQL {
		gw, ready, err := b.startGateway(ctx, true, true)
		if err != nil {
			return err
		}
		defer gw.stop()
		servers["gateway"] = &server{name: "gateway", addr: ready["https_addr"], proc: gw}
		sqlAddr = ready["sql_addr"]
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
		for _, t := range httpTargets {
			if _, err := download(ctx, tlsCfg, servers[t].url("/big"), 1<<20, 30*time.Second); err != nil {
				return fmt.Errorf("%s does not work: %w", t, err)
			}
			groups[t] = negotiated(ctx, tlsCfg, servers[t].addr)
		}
		tlsGroups = groups
		logf("TLS negotiated with a Go client: %v", groups)
	}
	sqlAddrs := map[string]string{"gateway": sqlAddr, "direct": b.tds}

	facts2 := runFacts(o, b, peerNames)
	if tlsGroups != nil {
		facts2["tls_with_go_client"] = tlsGroups
	}
	logf("measuring: %d round(s), %s loads; targets %s", o.rounds, o.duration, strings.Join(httpTargets, ", "))
	for round := range o.rounds {
		if ctx.Err() != nil {
			break
		}
		rot := func(ts []string) []string { // alternate who goes first
			k := round % len(ts)
			return append(slices.Clone(ts[k:]), ts[:k]...)
		}
		measure := func(test, id string, targets []string, f func(t string) (sample, error)) {
			if !tests[test] || ((test == "idle" || test == "sessions") && round >= o.memRounds) {
				return
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
		measure("h1", "h1_keepalive", httpTargets, func(t string) (sample, error) {
			return upstreamConns(t, func() (sample, error) { return wrk(ctx, servers[t].url("/"), o.duration, o.conns) })
		})
		measure("h2", "h2", httpTargets, func(t string) (sample, error) {
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
		measure("idle", "idle_conn_mem", httpTargets, func(t string) (sample, error) {
			s, err := b.startServer(ctx, t) // fresh process: no heap left over from the loads
			if err != nil {
				return sample{}, err
			}
			defer s.stop()
			return b.idleConns(ctx, s, tlsCfg, o.idleConns, o.settle)
		})
		measure("select1", "select1_p50", sqlTargets, func(t string) (sample, error) {
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
	}
	if ctx.Err() != nil {
		logf("stopped early (%v): reporting what was measured", context.Cause(ctx))
	}
	facts2["elapsed"] = time.Since(start).Round(time.Second).String()
	header := fmt.Sprintf("Gateway benchmark, %s, %d round(s) of %s loads (medians; ratios are gateway ÷ target).\n"+
		"Machine: %d CPUs shared by load generators, backends and the proxy under test; %s.\n",
		time.Now().Format("2006-01-02"), o.rounds, o.duration, runtime.NumCPU(), facts2["versions"])
	md := r.markdown(header)
	fmt.Fprint(stdout, md)
	if o.mdOut != "" {
		if err := os.WriteFile(o.mdOut, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if o.jsonOut != "" {
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
