package status

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

//go:embed page.html
var pageHTML string

// RefreshSeconds is how often the page reloads itself.
const RefreshSeconds = 10

var pageTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago":  func(t time.Time) string { return roundDuration(time.Since(t)) },
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"day":  func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"join": strings.Join,
	"days": func(d float64) string { return fmt.Sprintf("%.1f", d) },
}).Parse(pageHTML))

// WritePage renders the status page of s.
func WritePage(w io.Writer, s Snapshot) error {
	return pageTmpl.Execute(w, newPage(s))
}

// page is what the template draws: the snapshot with its charts computed.
type page struct {
	Snapshot
	Refresh  int
	Uptime   string
	CertBars []certBar
	Logins   chart
	Requests chart
	TLS      chart
}

// chart is a stacked bar chart of one value set per minute, in SVG units.
type chart struct {
	Title   string
	Width   int
	Height  int
	Max     float64
	Total   float64
	Bars    []bar
	Legend  []legend
	Minutes int
}

type bar struct {
	X, W   float64
	Parts  []barPart
	Title  string
	Height float64
}

type barPart struct {
	Y, H  float64
	Class string
}

type legend struct {
	Class, Label string
	Total        float64
}

// certBar is one certificate on the timeline to expiry.
type certBar struct {
	Names    string
	NotAfter time.Time
	DaysLeft float64
	Width    float64 // share of the timeline, 0..100
	Class    string  // ok, soon (< 30 days), urgent (< 14 days), renews (short-lived, renewal not due yet), expired
	Renews   time.Time
}

// renewsBefore reports whether the gateway renews c itself and has not
// reached the point where it does: the last third of its life, when
// certmagic renews internal CA and ACME certificates.
func renewsBefore(c Certificate) bool {
	if c.Issuer != "internal" && c.Issuer != "acme" {
		return false
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return life > 0 && time.Until(c.NotAfter) > life/3
}

const (
	chartWidth  = 600
	chartHeight = 120
	minutes     = 60
)

func newPage(s Snapshot) page {
	p := page{Snapshot: s, Refresh: RefreshSeconds, Uptime: roundDuration(s.Generated.Sub(s.Started))}
	p.CertBars = certBars(s.Certificates)
	p.Logins = stacked("SQL logins per minute", s.LastHour, []series2{
		{"ok-tls", "logged in, both legs TLS", func(c Counts) float64 { return sqlOK(c, true) }},
		{"ok-plain", "logged in, a leg in clear (loopback only)", func(c Counts) float64 { return sqlOK(c, false) }},
		{"failed", "refused by SQL Server (credentials)", func(c Counts) float64 {
			return c.Sum("sql_logins", map[string]string{"outcome": "login_failed"})
		}},
		{"refused", "refused by the gateway, failed handshakes, cut", func(c Counts) float64 { return sqlRefused(c) }},
	})
	p.Requests = stacked("HTTPS requests per minute", s.LastHour, []series2{
		{"ok-tls", "2xx and 3xx", func(c Counts) float64 {
			return c.Sum("http_requests", map[string]string{"code_class": "2xx"}) + c.Sum("http_requests", map[string]string{"code_class": "3xx"}) +
				c.Sum("http_requests", map[string]string{"code_class": "1xx"})
		}},
		{"failed", "4xx", func(c Counts) float64 { return c.Sum("http_requests", map[string]string{"code_class": "4xx"}) }},
		{"refused", "5xx or no answer", func(c Counts) float64 {
			return c.Sum("http_requests", map[string]string{"code_class": "5xx"}) + c.Sum("http_requests", map[string]string{"code_class": "none"})
		}},
	})
	p.TLS = stacked("HTTPS requests per minute by TLS version", s.LastHour, []series2{
		{"ok-tls", "TLS 1.3", func(c Counts) float64 { return c.Sum("http_requests_tls", map[string]string{"tls_version": "1.3"}) }},
		{"ok-plain", "TLS 1.2", func(c Counts) float64 { return c.Sum("http_requests_tls", map[string]string{"tls_version": "1.2"}) }},
	})
	return p
}

// sqlOK counts successful logins whose legs were all TLS (tls) or not.
func sqlOK(c Counts, tls bool) float64 {
	var n float64
	for _, e := range c["sql_logins"] {
		if e.Labels["outcome"] != "ok" {
			continue
		}
		both := e.Labels["client_tls"] != "none" && e.Labels["upstream_tls"] != "none"
		if both == tls {
			n += e.N
		}
	}
	return n
}

// sqlRefused counts logins the gateway refused or that were cut, and
// connections that ended before a login for a reason worth seeing.
func sqlRefused(c Counts) float64 {
	var n float64
	for _, e := range c["sql_logins"] {
		switch e.Labels["outcome"] {
		case "refused", "upstream_error", "client_gone":
			n += e.N
		}
	}
	for _, e := range c["sql_connections"] {
		switch e.Labels["outcome"] {
		case "refused_encryption", "handshake_failed", "malformed", "not_tds", "timeout", "over_limit":
			n += e.N
		}
	}
	return n
}

// series2 is one stacked series: a CSS class, a label and its value.
type series2 struct {
	class, label string
	value        func(Counts) float64
}

// stacked draws the last hour as stacked bars, one per minute, the most
// recent on the right; minutes without a sample are left empty.
func stacked(title string, hour []Minute, ss []series2) chart {
	c := chart{Title: title, Width: chartWidth, Height: chartHeight, Minutes: len(hour)}
	vals := make([][]float64, len(hour))
	for i, m := range hour {
		vals[i] = make([]float64, len(ss))
		sum := 0.0
		for j, s := range ss {
			v := s.value(m.Counts)
			vals[i][j] = v
			sum += v
		}
		c.Max = math.Max(c.Max, sum)
	}
	for j, s := range ss {
		l := legend{Class: s.class, Label: s.label}
		for i := range hour {
			l.Total += vals[i][j]
		}
		c.Total += l.Total
		c.Legend = append(c.Legend, l)
	}
	scale := 0.0
	if c.Max > 0 {
		scale = float64(chartHeight-4) / c.Max
	}
	w := float64(chartWidth) / minutes
	offset := minutes - len(hour)
	for i, m := range hour {
		b := bar{X: float64(offset+i)*w + 1, W: w - 2, Title: m.Start.UTC().Format("15:04")}
		y := float64(chartHeight)
		var parts []string
		for j, s := range ss {
			h := vals[i][j] * scale
			if h > 0 {
				y -= h
				b.Parts = append(b.Parts, barPart{Y: y, H: h, Class: s.class})
			}
			if vals[i][j] > 0 {
				parts = append(parts, fmt.Sprintf("%s %g", s.label, vals[i][j]))
			}
		}
		if len(parts) > 0 {
			b.Title += ": " + strings.Join(parts, ", ")
		}
		b.Height = float64(chartHeight) - y
		c.Bars = append(c.Bars, b)
	}
	return c
}

// certBars puts each certificate on a timeline long enough for the latest
// expiry (at least 90 days), soonest first.
func certBars(certs []Certificate) []certBar {
	horizon := 90.0
	for _, c := range certs {
		horizon = math.Max(horizon, c.DaysLeft)
	}
	out := make([]certBar, 0, len(certs))
	for _, c := range certs {
		b := certBar{Names: strings.Join(c.Names, ", "), NotAfter: c.NotAfter, DaysLeft: c.DaysLeft,
			Width: math.Max(0, math.Min(100, 100*c.DaysLeft/horizon))}
		switch {
		case c.DaysLeft <= 0:
			b.Class = "expired"
		case c.DaysLeft < 14 && renewsBefore(c):
			// A short-lived certificate the gateway renews itself (the
			// internal CA's 7-day leaves) has under 14 days from the
			// start; it is worth red only once its renewal is late.
			b.Class, b.Renews = "renews", c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore)*2/3)
		case c.DaysLeft < 14:
			b.Class = "urgent"
		case c.DaysLeft < 30:
			b.Class = "soon"
		default:
			b.Class = "ok"
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DaysLeft < out[j].DaysLeft })
	return out
}

// roundDuration prints d to the second (or minute, beyond an hour).
func roundDuration(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
