package status

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// tracked are the counters a History keeps, each under a short name, with
// the labels it keeps (the others are summed over).
var tracked = []struct {
	name, family string
	labels       []string
}{
	{"sql_logins", "gateway_tds_logins_tls_total", []string{"listener", "client_tls", "upstream_tls", "outcome"}},
	{"sql_refusals", "gateway_tds_refusals_total", []string{"listener", "error_number"}},
	{"sql_connections", "gateway_tds_connections_total", []string{"listener", "negotiated", "outcome"}},
	{"http_requests", "gateway_http_requests_total", []string{"site", "code_class"}},
	{"http_requests_tls", "gateway_http_requests_tls_total", []string{"tls_version"}},
	{"tls_handshakes", "gateway_tls_handshakes_total", []string{"protocol", "listener", "version", "result"}},
}

// Count is one counter's increase: its labels and by how much.
type Count struct {
	Labels map[string]string `json:"labels"`
	N      float64           `json:"n"`
}

// Counts are increases by tracked name (sql_logins, sql_refusals,
// sql_connections, http_requests, http_requests_tls, tls_handshakes). A
// name with no entry had no increase; every name is present, so that an
// empty list means "measured: none", not "unknown".
type Counts map[string][]Count

// Sum adds the counts of name whose labels match every key of where.
func (c Counts) Sum(name string, where map[string]string) float64 {
	var n float64
	for _, e := range c[name] {
		if matches(e.Labels, where) {
			n += e.N
		}
	}
	return n
}

func matches(labels, where map[string]string) bool {
	for k, v := range where {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// series identifies one kept series: a tracked name and its kept label
// values, in the tracked order.
type series struct {
	name   string
	values string // label values joined by \x00
}

// sample is the tracked counters' values at one time.
type sample struct {
	at     time.Time
	values map[series]float64
}

// History keeps the tracked counters of a registry once a minute for a
// bounded time. Its methods are safe for concurrent use.
type History struct {
	g    prometheus.Gatherer
	keep time.Duration
	now  func() time.Time

	mu      sync.Mutex
	samples []sample // oldest first
}

// DefaultKeep is how long a History keeps its samples: a working day and
// then some, for `gateway audit --since 24h`.
const DefaultKeep = 25 * time.Hour

// NewHistory samples g; keep 0 means DefaultKeep.
func NewHistory(g prometheus.Gatherer, keep time.Duration) *History {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &History{g: g, keep: keep, now: time.Now}
}

// Run samples at once, then at every minute boundary, until ctx ends.
func (h *History) Run(ctx context.Context) error {
	_ = h.Sample() // a registry error leaves a gap, which Window reports
	for {
		now := h.now()
		t := time.NewTimer(now.Truncate(time.Minute).Add(time.Minute).Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			_ = h.Sample()
		}
	}
}

// Sample takes a sample now and drops those older than the keep time.
func (h *History) Sample() error {
	s, err := h.gather()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	cut := 0
	for cut < len(h.samples)-1 && s.at.Sub(h.samples[cut].at) > h.keep {
		cut++
	}
	h.samples = slices.Delete(h.samples, 0, cut)
	return nil
}

func (h *History) gather() (sample, error) {
	mfs, err := h.g.Gather()
	s := sample{at: h.now(), values: map[series]float64{}}
	if err != nil {
		return s, fmt.Errorf("status: gathering metrics: %w", err)
	}
	byFamily := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byFamily[mf.GetName()] = mf
	}
	for _, tr := range tracked {
		mf := byFamily[tr.family]
		if mf == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			vals := make([]string, len(tr.labels))
			for i, l := range tr.labels {
				vals[i] = labels[l]
			}
			s.values[series{tr.name, strings.Join(vals, "\x00")}] += m.GetCounter().GetValue()
		}
	}
	return s, nil
}

// Window is what happened between From and To.
type Window struct {
	// Requested is the span asked for; From..To is the span measured, which
	// is shorter when the gateway has not run (or kept samples) that long:
	// then Complete is false and the figures cover From..To only.
	Requested time.Duration `json:"requested_seconds"`
	From      time.Time     `json:"from"`
	To        time.Time     `json:"to"`
	Complete  bool          `json:"complete"`
	Counts    Counts        `json:"counts"`
}

// Window measures the last d: the tracked counters now, less their values
// at the last sample at or before now-d (or the oldest sample kept).
func (h *History) Window(d time.Duration) (Window, error) {
	cur, err := h.gather()
	if err != nil {
		return Window{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	w := Window{Requested: d, To: cur.at}
	if len(h.samples) == 0 {
		w.From = cur.at
		w.Counts = delta(cur, cur)
		return w, nil
	}
	start := cur.at.Add(-d)
	base := h.samples[0]
	w.Complete = !base.at.After(start)
	for _, s := range h.samples {
		if s.at.After(start) {
			break
		}
		base = s
	}
	w.From = base.at
	w.Counts = delta(base, cur)
	return w, nil
}

// Minute is one minute of the history.
type Minute struct {
	Start  time.Time `json:"start"`
	Counts Counts    `json:"counts"`
}

// Minutes returns the increases between consecutive samples over the last
// n minutes, oldest first; fewer when the history is shorter.
func (h *History) Minutes(n int) []Minute {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := max(len(h.samples)-n-1, 0)
	out := make([]Minute, 0, n)
	for i := first + 1; i < len(h.samples); i++ {
		out = append(out, Minute{Start: h.samples[i-1].at, Counts: delta(h.samples[i-1], h.samples[i])})
	}
	return out
}

// Recent returns the last n-1 minutes (Minutes) and the minute under way:
// what happened since the last sample, read now, so that a page shows load
// as it runs instead of a minute later.
func (h *History) Recent(n int) ([]Minute, error) {
	cur, err := h.gather()
	if err != nil {
		return nil, err
	}
	out := h.Minutes(n - 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) > 0 {
		last := h.samples[len(h.samples)-1]
		out = append(out, Minute{Start: last.at, Counts: delta(last, cur)})
	}
	return out, nil
}

// delta is cur - base per series; a counter that went down (a restart of
// the registry, which a running process never sees) counts from zero.
func delta(base, cur sample) Counts {
	c := Counts{}
	for _, tr := range tracked {
		c[tr.name] = []Count{}
	}
	keys := make([]series, 0, len(cur.values))
	for k := range cur.values {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].values < keys[j].values
	})
	for _, k := range keys {
		n := cur.values[k] - base.values[k]
		if n < 0 {
			n = cur.values[k]
		}
		if n == 0 {
			continue
		}
		c[k.name] = append(c[k.name], Count{Labels: labelsOf(k), N: n})
	}
	return c
}

func labelsOf(k series) map[string]string {
	for _, tr := range tracked {
		if tr.name != k.name {
			continue
		}
		vals := strings.Split(k.values, "\x00")
		m := make(map[string]string, len(tr.labels))
		for i, l := range tr.labels {
			if i < len(vals) {
				m[l] = vals[i]
			}
		}
		return m
	}
	return nil
}
