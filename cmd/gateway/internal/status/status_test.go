package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a History clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestHistory(t *testing.T) (*History, *prometheus.CounterVec, *prometheus.CounterVec, *fakeClock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_tds_logins_tls_total", Help: "x"},
		[]string{"listener", "client_tls", "upstream_tls", "outcome"})
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gateway_http_requests_tls_total", Help: "x"}, []string{"tls_version"})
	reg.MustRegister(logins, reqs)
	clock := &fakeClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	h := NewHistory(reg, 2*time.Hour)
	h.now = clock.now
	return h, logins, reqs, clock
}

// TestHistoryWindow: a window counts what happened in it, from the sample
// at or before its start; a span longer than the history says so and
// covers what was measured; a span inside it is complete.
func TestHistoryWindow(t *testing.T) {
	h, logins, reqs, clock := newTestHistory(t)
	ok := logins.WithLabelValues("crm", "1.2", "1.2", "ok")
	ok.Add(5) // before the first sample: never counted
	must(t, h.Sample())
	for range 3 {
		clock.t = clock.t.Add(time.Minute)
		ok.Add(2)
		reqs.WithLabelValues("1.3").Inc()
		must(t, h.Sample())
	}
	clock.t = clock.t.Add(30 * time.Second)
	logins.WithLabelValues("crm", "1.2", "none", "refused").Inc()

	w, err := h.Window(time.Hour)
	must(t, err)
	if w.Complete || !w.From.Equal(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("1h window over 3.5 minutes of history: complete %v from %v", w.Complete, w.From)
	}
	if n := w.Counts.Sum("sql_logins", map[string]string{"outcome": "ok"}); n != 6 {
		t.Errorf("ok logins in the window = %v, want 6", n)
	}
	if n := w.Counts.Sum("sql_logins", map[string]string{"upstream_tls": "none"}); n != 1 {
		t.Errorf("logins with a plain upstream leg = %v, want 1", n)
	}
	if n := w.Counts.Sum("http_requests_tls", nil); n != 3 {
		t.Errorf("requests = %v, want 3", n)
	}
	if w.Counts["sql_refusals"] == nil {
		t.Error("an untracked-by-the-registry name is absent instead of measured-empty")
	}

	w, err = h.Window(90 * time.Second)
	must(t, err)
	if !w.Complete || n(w.Counts.Sum("sql_logins", map[string]string{"outcome": "ok"})) != 2 {
		t.Errorf("90s window: complete %v, ok logins %v; want complete with the last minute's 2", w.Complete, w.Counts.Sum("sql_logins", map[string]string{"outcome": "ok"}))
	}

	mins := h.Minutes(60)
	if len(mins) != 3 {
		t.Fatalf("%d minutes, want 3", len(mins))
	}
	for i, m := range mins {
		if got := m.Counts.Sum("sql_logins", nil); got != 2 {
			t.Errorf("minute %d: %v logins, want 2", i, got)
		}
	}
}

func n(f float64) int { return int(f) }

// TestHistoryKeep: samples older than the keep time are dropped.
func TestHistoryKeep(t *testing.T) {
	h, _, _, clock := newTestHistory(t)
	for range 200 {
		must(t, h.Sample())
		clock.t = clock.t.Add(time.Minute)
	}
	if got := len(h.Minutes(1000)); got != 120 {
		t.Errorf("%d minutes kept, want 120 (two hours)", got)
	}
}

// TestPage: the page is self-contained (no script, no external URL), draws
// one bar per sampled minute, marks a certificate near expiry red unless
// the gateway renews it and its renewal is not due, and stays small.
func TestPage(t *testing.T) {
	h, logins, _, clock := newTestHistory(t)
	must(t, h.Sample())
	for i := range 60 {
		clock.t = clock.t.Add(time.Minute)
		logins.WithLabelValues("crm", "1.3", "1.2", "ok").Add(float64(i))
		must(t, h.Sample())
	}
	now := time.Now()
	snap := Snapshot{Generated: now, Started: now.Add(-time.Hour), Version: "test", Ready: true,
		Listeners: []Listener{{Kind: "sql", Name: "crm", Address: "127.0.0.1:1433", State: "serving"}},
		Certificates: []Certificate{
			{Names: []string{"operator.test"}, Issuer: "operator", NotBefore: now.Add(-360 * 24 * time.Hour), NotAfter: now.Add(5 * 24 * time.Hour), DaysLeft: 5},
			{Names: []string{"leaf.test"}, Issuer: "internal", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7*24*time.Hour - time.Hour), DaysLeft: 6.9},
		},
		LastHour: h.Minutes(60)}
	var buf bytes.Buffer
	must(t, WritePage(&buf, snap))
	html := buf.String()
	for _, bad := range []string{"<script", "http://", "https://", "src="} {
		if strings.Contains(html, bad) {
			t.Errorf("the page contains %q: it must need nothing external", bad)
		}
	}
	if got := strings.Count(html, `class="ok-tls"/>`); got != 59 { // minute 0 had no login
		t.Errorf("%d bars of logins, want 59", got)
	}
	if !strings.Contains(html, `fill urgent`) || !strings.Contains(html, `fill renews`) {
		t.Error("the operator certificate 5 days from expiry should be red and the fresh internal leaf not")
	}
	if buf.Len() > 200<<10 {
		t.Errorf("page is %d bytes, want under 200 KB", buf.Len())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
