//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// How cost grows with load: each scaling test measures a target at a few
// loads (connections, sessions) and reports throughput, p99 latency and the
// resident memory of the target's processes at each, so that the report and
// its plot show slopes, not one point.

// scalePoint is one target at one load.
type scalePoint struct {
	Test   string  `json:"test"`
	Target string  `json:"target"`
	Load   int     `json:"load"`
	Rate   float64 `json:"rate,omitempty"` // requests or queries per second
	P99    float64 `json:"p99_us,omitempty"`
	RSSMiB float64 `json:"rss_mib"`
	Note   string  `json:"note,omitempty"`
}

// scaleTests describes each scaling test for the report and the plot.
var scaleTests = []struct {
	id, title, load, rate string
}{
	{"scale_http", "HTTP/1.1 keep-alive, 64 B responses (wrk -t2)", "client connections", "req/s"},
	{"scale_tds", "TDS SELECT 1, one query at a time per session", "concurrent sessions", "queries/s"},
	{"scale_idle", "idle keep-alive TLS connections", "idle connections", ""},
}

// rssSampler records the largest resident memory of a process tree while a
// load runs.
type rssSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	s.done.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := treeRSS(pid); err == nil && rss > s.max.Load() {
				s.max.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	})
	return s
}

// end stops sampling and returns the peak in MiB.
func (s *rssSampler) end() float64 {
	close(s.stop)
	s.done.Wait()
	return float64(s.max.Load()) / (1 << 20)
}

var wrkP99 = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)

// wrkLatency runs wrk with --latency and returns requests/s and p99 in µs.
func wrkLatency(ctx context.Context, url string, d time.Duration, conns int) (rate, p99 float64, note string, err error) {
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency", url}
	out, err := runLoad(ctx, d+60*time.Second, "wrk", args...)
	if err != nil {
		return 0, 0, "", err
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, "", fmt.Errorf("wrk: no Requests/sec in:\n%s", out)
	}
	rate, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkP99.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		p99 = v * map[string]float64{"us": 1, "ms": 1e3, "s": 1e6}[m[2]]
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		note = fmt.Sprintf("socket errors c%s r%s w%s t%s", m[1], m[2], m[3], m[4])
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		note = strings.TrimSpace(note + " non-2xx " + m[1])
	}
	return rate, p99, note, nil
}

// scaleTDS runs SELECT 1 in a loop on sessions concurrent sessions for d and
// returns queries/s and the p99 latency in µs.
func (b *bench) scaleTDS(ctx context.Context, addr string, sessions int, d time.Duration) (rate, p99 float64, err error) {
	db, err := b.openDB(addr)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(sessions)
	db.SetMaxIdleConns(sessions)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lat   []float64
		first error
		n     atomic.Int64
	)
	// Log every session in before the clock starts.
	ready := make(chan struct{})
	var loggedIn sync.WaitGroup
	loggedIn.Add(sessions)
	stop := time.Time{}
	for range sessions {
		wg.Go(func() {
			conn, err := db.Conn(ctx)
			loggedIn.Done()
			if err != nil {
				mu.Lock()
				first = cmpOr(first, err)
				mu.Unlock()
				return
			}
			defer conn.Close()
			<-ready
			mine := make([]float64, 0, 4096)
			for time.Now().Before(stop) && ctx.Err() == nil {
				t := time.Now()
				var v int
				if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&v); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
				mine = append(mine, float64(time.Since(t).Nanoseconds())/1e3)
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	loggedIn.Wait()
	start := time.Now()
	stop = start.Add(d)
	close(ready)
	wg.Wait()
	if first != nil {
		return 0, 0, first
	}
	slices.Sort(lat)
	return float64(n.Load()) / time.Since(start).Seconds(), percentile(lat, 0.99), nil
}

// scaleMarkdown renders the scaling points: one table per test, one row
// per target and load.
func scaleMarkdown(points []scalePoint) string {
	if len(points) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\nHow cost grows (one sample per point; RSS is the peak of the target's processes during the load):\n")
	for _, st := range scaleTests {
		var rows []scalePoint
		for _, p := range points {
			if p.Test == st.id {
				rows = append(rows, p)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&sb, "\n%s\n\n", st.title)
		if st.rate != "" {
			fmt.Fprintf(&sb, "| target | %s | %s | p99 µs | RSS MiB |\n|---|---:|---:|---:|---:|\n", st.load, st.rate)
		} else {
			fmt.Fprintf(&sb, "| target | %s | RSS MiB | KiB per connection |\n|---|---:|---:|---:|\n", st.load)
		}
		for _, p := range rows {
			if st.rate != "" {
				fmt.Fprintf(&sb, "| %s | %d | %s | %s | %s |", p.Target, p.Load, fmtValue(p.Rate), fmtValue(p.P99), fmtValue(p.RSSMiB))
			} else {
				fmt.Fprintf(&sb, "| %s | %d | %s | %s |", p.Target, p.Load, fmtValue(p.RSSMiB), fmtValue(p.Rate))
			}
			if p.Note != "" {
				sb.WriteString(" " + p.Note)
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

// targetColors keeps each target's colour the same in every chart.
var targetColors = map[string]string{
	"gateway": "#d62728", gatewayGOGC50: "#ff9896", gatewayNoPGO: "#8c564b",
	"nginx": "#2ca02c", "haproxy": "#1f77b4", "caddy": "#9467bd", "direct": "#7f7f7f",
}

// writeScaleSVG draws the scaling points: one row of charts per test
// (throughput, p99, memory), the load on a logarithmic x axis.
func writeScaleSVG(path string, points []scalePoint) error {
	const w, h, pad = 300, 210, 50
	type chart struct {
		title string
		value func(scalePoint) float64
	}
	var rows [][]chart
	var rowTests []string
	for _, st := range scaleTests {
		has := slices.ContainsFunc(points, func(p scalePoint) bool { return p.Test == st.id })
		if !has {
			continue
		}
		rowTests = append(rowTests, st.id)
		if st.rate != "" {
			rows = append(rows, []chart{
				{st.rate, func(p scalePoint) float64 { return p.Rate }},
				{"p99 latency, µs", func(p scalePoint) float64 { return p.P99 }},
				{"RSS, MiB", func(p scalePoint) float64 { return p.RSSMiB }},
			})
		} else {
			rows = append(rows, []chart{
				{"RSS, MiB", func(p scalePoint) float64 { return p.RSSMiB }},
				{"KiB per connection", func(p scalePoint) float64 { return p.Rate }},
			})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	const rowGap = pad + 45 // axis labels below, row title above
	width, height := 3*(w+pad)+pad, len(rows)*(h+rowGap)+30
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for ri, row := range rows {
		test := rowTests[ri]
		var loadName, title string
		for _, st := range scaleTests {
			if st.id == test {
				loadName, title = st.load, st.title
			}
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", pad, 22+ri*(h+rowGap), xmlEscape(title))
		var pts []scalePoint
		var targets []string
		var loads []int
		for _, p := range points {
			if p.Test != test {
				continue
			}
			pts = append(pts, p)
			if !slices.Contains(targets, p.Target) {
				targets = append(targets, p.Target)
			}
			if !slices.Contains(loads, p.Load) {
				loads = append(loads, p.Load)
			}
		}
		slices.Sort(loads)
		for ci, c := range row {
			x0, y0 := pad+ci*(w+pad), 48+ri*(h+rowGap)
			maxV := 0.0
			for _, p := range pts {
				maxV = math.Max(maxV, c.value(p))
			}
			if maxV <= 0 {
				continue
			}
			maxV *= 1.1
			xOf := func(load int) float64 {
				if len(loads) == 1 {
					return float64(x0) + float64(w)/2
				}
				lo, hi := math.Log(float64(loads[0])), math.Log(float64(loads[len(loads)-1]))
				return float64(x0) + 10 + (math.Log(float64(load))-lo)/(hi-lo)*float64(w-20)
			}
			yOf := func(v float64) float64 { return float64(y0+h) - v/maxV*float64(h) }
			fmt.Fprintf(&sb, `<text x="%d" y="%d">%s</text>`+"\n", x0, y0-6, xmlEscape(c.title))
			fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ccc"/>`+"\n", x0, y0, w, h)
			for _, l := range loads {
				fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", xOf(l), y0+h+14, l)
			}
			fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x0+w/2, y0+h+28, loadName)
			for _, frac := range []float64{0, 0.5, 1} {
				v := maxV / 1.1 * frac
				fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", x0-4, yOf(v)+4, fmtValue(v))
			}
			for _, t := range targets {
				var line []string
				for _, l := range loads {
					for _, p := range pts {
						if p.Target == t && p.Load == l && c.value(p) > 0 {
							line = append(line, fmt.Sprintf("%.1f,%.1f", xOf(l), yOf(c.value(p))))
						}
					}
				}
				color := targetColors[t]
				if color == "" {
					color = "#000"
				}
				fmt.Fprintf(&sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(line, " "), color)
				for _, xy := range line {
					x, y, _ := strings.Cut(xy, ",")
					fmt.Fprintf(&sb, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", x, y, color)
				}
			}
			if ci == 0 {
				for i, t := range targets {
					color := targetColors[t]
					if color == "" {
						color = "#000"
					}
					fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
						x0+8, y0+8+i*14, color, x0+22, y0+17+i*14, xmlEscape(t))
				}
			}
		}
	}
	sb.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// scaleRuns measures the HTTP and TDS scaling curves on the long-running
// targets, one sample per point.
func (b *bench) scaleRuns(ctx context.Context, o options, servers map[string]*server, sqlAddrs map[string]string,
	httpTargets, sqlTargets []string, directPID map[string]int) []scalePoint {
	var pts []scalePoint
	pidOf := func(t, kind string) int {
		if t == "direct" {
			return directPID[kind]
		}
		return servers[t].proc.pid()
	}
	for _, c := range parseInts(o.scaleConns) {
		for _, t := range httpTargets {
			if ctx.Err() != nil {
				return pts
			}
			s := sampleRSS(pidOf(t, "http"))
			rate, p99, note, err := wrkLatency(ctx, servers[t].url("/"), o.duration, c)
			rss := s.end()
			if err != nil {
				logf("scale http %d %s: %v", c, t, err)
				continue
			}
			pts = append(pts, scalePoint{Test: "scale_http", Target: t, Load: c, Rate: rate, P99: p99, RSSMiB: rss, Note: note})
			logf("scale http  %5d conns    %-8s %8.0f req/s  p99 %8.0f µs  rss %6.1f MiB %s", c, t, rate, p99, rss, note)
		}
	}
	for _, n := range parseInts(o.scaleSessions) {
		for _, t := range sqlTargets {
			if ctx.Err() != nil {
				return pts
			}
			s := sampleRSS(pidOf(t, "tds"))
			rate, p99, err := b.scaleTDS(ctx, sqlAddrs[t], n, o.duration)
			rss := s.end()
			if err != nil {
				logf("scale tds %d %s: %v", n, t, err)
				continue
			}
			pts = append(pts, scalePoint{Test: "scale_tds", Target: t, Load: n, Rate: rate, P99: p99, RSSMiB: rss})
			logf("scale tds   %5d sessions %-8s %8.0f q/s    p99 %8.0f µs  rss %6.1f MiB", n, t, rate, p99, rss)
		}
	}
	return pts
}

func parseInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}
