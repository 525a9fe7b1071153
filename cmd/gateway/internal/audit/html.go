package audit

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

//go:embed report.html
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"date":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"day":   func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"join":  strings.Join,
	"num":   func(f float64) string { return fmt.Sprintf("%g", f) },
	"fixed": func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"section": func(checks []Check, s string) []Check {
		var out []Check
		for _, c := range checks {
			if c.Section == s {
				out = append(out, c)
			}
		}
		return out
	},
	"yesno": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
}).Parse(reportHTML))

// sections are the report's parts, in order, with their headings.
var sections = []struct{ ID, Title string }{
	{"gateway", "The running gateway"},
	{"listeners", "Listeners, scanned from outside"},
	{"upstreams", "Legs to IIS and SQL Server"},
	{"sql_server", "SQL Server's own view"},
	{"traffic", "What the gateway saw"},
}

// WriteHTML renders r as one self-contained HTML page.
func WriteHTML(w io.Writer, r *Report) error {
	return reportTmpl.Execute(w, struct {
		*Report
		Sections any
	}{r, sections})
}

// WriteFiles writes DIR/audit.json and DIR/audit.html.
func WriteFiles(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "audit.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "audit.html"))
	if err != nil {
		return err
	}
	if err := WriteHTML(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
