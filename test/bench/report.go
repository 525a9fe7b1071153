//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// metric is one figure the harness measures on several targets.
type metric struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Unit   string `json:"unit"`
	Higher bool   `json:"higher_is_better"`
	Goals  []goal `json:"goals,omitempty"`
}

// goal is one of the targets: gateway ÷ Peer must be at least
// (higher is better) or at most (lower is better) Value; Peer "" means a
// bound on the gateway's own figure.
type goal struct {
	Peer  string  `json:"peer,omitempty"`
	Value float64 `json:"value"`
}

// results holds every sample, by metric and target, in measurement order.
type results struct {
	metrics []metric
	targets map[string][]string // metric ID -> targets in column order
	samples map[string]map[string][]sample
}

func newResults() *results {
	return &results{targets: map[string][]string{}, samples: map[string]map[string][]sample{}}
}

func (r *results) declare(m metric, targets []string) {
	r.metrics = append(r.metrics, m)
	r.targets[m.ID] = targets
	r.samples[m.ID] = map[string][]sample{}
}

func (r *results) add(id, target string, s sample) {
	r.samples[id][target] = append(r.samples[id][target], s)
}

// median of a target's samples; NaN when there is none.
func (r *results) median(id, target string) float64 {
	ss := r.samples[id][target]
	if len(ss) == 0 {
		return math.NaN()
	}
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = s.value
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r *results) ratio(id, peer string) float64 {
	return r.median(id, "gateway") / r.median(id, peer)
}

// goalMet says whether the gateway meets g, and how the goal reads.
func (r *results) goalMet(m metric, g goal) (text string, met, known bool) {
	op := "≥"
	if !m.Higher {
		op = "≤"
	}
	var v float64
	if g.Peer == "" {
		text = fmt.Sprintf("%s %g %s", op, g.Value, m.Unit)
		v = r.median(m.ID, "gateway")
	} else {
		text = fmt.Sprintf("%s %g× %s", op, g.Value, g.Peer)
		v = r.ratio(m.ID, g.Peer)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return text, false, false
	}
	if m.Higher {
		return text, v >= g.Value, true
	}
	return text, v <= g.Value, true
}

// goalsText renders m's goals with a mark each.
func (r *results) goalsText(m metric) string {
	var parts []string
	for _, g := range m.Goals {
		text, met, known := r.goalMet(m, g)
		switch {
		case !known:
			text += " (not measured)"
		case met:
			text += " ✅"
		default:
			text += " ❌"
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, "; ")
}

// targetsSummary lists every goal with its verdict, the lines `make bench`
// ends with.
func (r *results) targetsSummary() string {
	var sb strings.Builder
	met, total := 0, 0
	for _, m := range r.metrics {
		for _, g := range m.Goals {
			text, ok, known := r.goalMet(m, g)
			v := r.median(m.ID, "gateway")
			if g.Peer != "" {
				v = r.ratio(m.ID, g.Peer)
			}
			verdict := "not measured"
			switch {
			case known && ok:
				verdict, met = "met", met+1
			case known:
				verdict = "NOT met"
			}
			total++
			got := fmtValue(v) + " " + m.Unit
			if g.Peer != "" {
				got = fmtRatio(v)
			}
			fmt.Fprintf(&sb, "- %s: %s — %s (%s)\n", m.Title, text, verdict, got)
		}
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("\nTargets: %d of %d met\n\n", met, total) + sb.String()
}

func fmtValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// markdown renders one table per group of metrics with the same targets:
// raw medians, then gateway ÷ each other target, then the goal.
func (r *results) markdown(header string) string {
	var sb strings.Builder
	sb.WriteString(header)
	type group struct {
		targets []string
		metrics []metric
	}
	var groups []*group
	for _, m := range r.metrics {
		ts := r.targets[m.ID]
		var g *group
		for _, x := range groups {
			if slices.Equal(x.targets, ts) {
				g = x
			}
		}
		if g == nil {
			g = &group{targets: ts}
			groups = append(groups, g)
		}
		g.metrics = append(g.metrics, m)
	}
	var notes []string
	for _, g := range groups {
		peers := slices.DeleteFunc(slices.Clone(g.targets), func(t string) bool { return t == "gateway" })
		sb.WriteString("\n| test | unit |")
		for _, t := range g.targets {
			sb.WriteString(" " + t + " |")
		}
		for _, p := range peers {
			sb.WriteString(" gw ÷ " + p + " |")
		}
		sb.WriteString(" goal |\n|---|---|")
		sb.WriteString(strings.Repeat("---:|", len(g.targets)+len(peers)) + "---|\n")
		for _, m := range g.metrics {
			better := "higher is better"
			if !m.Higher {
				better = "lower is better"
			}
			fmt.Fprintf(&sb, "| %s | %s (%s) |", m.Title, m.Unit, better)
			for _, t := range g.targets {
				sb.WriteString(" " + fmtValue(r.median(m.ID, t)) + " |")
				for i, s := range r.samples[m.ID][t] {
					if s.note != "" {
						notes = append(notes, fmt.Sprintf("%s, %s, round %d: %s", m.Title, t, i+1, s.note))
					}
				}
			}
			for _, p := range peers {
				sb.WriteString(" " + fmtRatio(r.ratio(m.ID, p)) + " |")
			}
			sb.WriteString(" " + r.goalsText(m) + " |\n")
		}
	}
	if len(notes) > 0 {
		sb.WriteString("\nNotes:\n")
		for _, n := range notes {
			sb.WriteString("- " + n + "\n")
		}
	}
	return sb.String()
}

type jsonTarget struct {
	Median  float64   `json:"median"`
	Samples []float64 `json:"samples"`
	Notes   []string  `json:"notes,omitempty"`
}

type jsonMetric struct {
	metric
	Targets  map[string]jsonTarget `json:"targets"`
	Ratios   map[string]float64    `json:"gateway_ratio,omitempty"`
	GoalsMet []bool                `json:"goals_met,omitempty"` // in the order of Goals; absent when one was not measured
}

// writeJSON writes every sample, median and ratio with the run's facts.
func (r *results) writeJSON(path string, facts map[string]any) error {
	var out []jsonMetric
	for _, m := range r.metrics {
		jm := jsonMetric{metric: m, Targets: map[string]jsonTarget{}, Ratios: map[string]float64{}}
		for _, t := range r.targets[m.ID] {
			jt := jsonTarget{Median: r.median(m.ID, t)}
			for _, s := range r.samples[m.ID][t] {
				jt.Samples = append(jt.Samples, s.value)
				if n := strings.TrimSpace(s.note + " " + s.info); n != "" {
					jt.Notes = append(jt.Notes, n)
				}
			}
			if math.IsNaN(jt.Median) {
				continue
			}
			jm.Targets[t] = jt
			if t != "gateway" {
				if v := r.ratio(m.ID, t); !math.IsNaN(v) && !math.IsInf(v, 0) {
					jm.Ratios[t] = v
				}
			}
		}
		for _, g := range m.Goals {
			_, met, known := r.goalMet(m, g)
			if !known {
				jm.GoalsMet = nil
				break
			}
			jm.GoalsMet = append(jm.GoalsMet, met)
		}
		out = append(out, jm)
	}
	data, err := json.MarshalIndent(map[string]any{"run": facts, "metrics": out}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
