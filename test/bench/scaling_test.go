//go:build linux

package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScaleSVG: the plot is well-formed SVG with one line per target and
// chart, and the Markdown has a row per point.
func TestScaleSVG(t *testing.T) {
	var pts []scalePoint
	for _, target := range []string{"gateway", "nginx", "direct"} {
		for i, load := range []int{64, 256, 1024} {
			pts = append(pts, scalePoint{Test: "scale_http", Target: target, Load: load, Rate: float64(1000 * (i + 1)), P99: 100, RSSMiB: 30})
		}
	}
	pts = append(pts, scalePoint{Test: "scale_idle", Target: "gateway", Load: 2500, RSSMiB: 90, Rate: 36},
		scalePoint{Test: "scale_idle", Target: "gateway", Load: 10000, RSSMiB: 400, Rate: 38})
	if in := os.Getenv("BENCH_JSON"); in != "" { // re-draw a run's plot
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var run struct {
			Run struct {
				Scaling []scalePoint `json:"scaling"`
			} `json:"run"`
		}
		if err := json.Unmarshal(data, &run); err != nil {
			t.Fatal(err)
		}
		pts = run.Run.Scaling
	}
	path := filepath.Join(t.TempDir(), "scale.svg")
	if out := os.Getenv("BENCH_SVG"); out != "" {
		path = out
	}
	if err := writeScaleSVG(path, pts); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName   xml.Name `xml:"svg"`
		Polylines []struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("not well-formed SVG: %v", err)
	}
	if os.Getenv("BENCH_JSON") == "" {
		// scale_http: 3 charts x 3 targets; scale_idle: 2 charts x 1 target.
		if len(doc.Polylines) != 11 {
			t.Errorf("%d lines, want 11", len(doc.Polylines))
		}
		if got := strings.Count(doc.Polylines[0].Points, ","); got != 3 {
			t.Errorf("first line has %d points, want 3", got)
		}
		md := scaleMarkdown(pts)
		if got := strings.Count(md, "\n| gateway |"); got != 5 {
			t.Errorf("markdown has %d gateway rows, want 5:\n%s", got, md)
		}
	}
}
