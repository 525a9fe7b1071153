// Command verify runs what a release of the gateway must pass and prints one
// table at the end — check, figure, verdict — exiting 1 if any check fails.
// `make verify` runs it; `make test` runs its fuzz step alone, briefly.
//
// Steps, in order (select with -steps):
//
//	lint   gofmt, go vet, GOOS=windows build, staticcheck, golangci-lint (make lint)
//	test   go test -race ./... with the big variants (GATEWAY_E2E_BIG=1);
//	       the fast proofs (test/proof_*: hostile TDS and HTTP input,
//	       downgrade relay, SQL TLS posture, log hygiene) add their rows
//	fuzz   go test -fuzz for each fuzz target of ./sqltunnel/..., -fuzztime
//	       each; a target fails only when it writes a crasher to its
//	       testdata/fuzz (Go 1.26's coordinator sometimes ends a clean run
//	       with "context deadline exceeded": go.dev/issue/75804)
//	long   the long proofs, TestVerify* in ./test with GATEWAY_PROOF_LONG=1:
//	       testssl and sslscan on both listeners, h2spec, faults under
//	       load, and the tshark wire capture (root only)
//
// h2spec is taken from $H2SPEC, else from PATH, else installed with go
// install into a temporary GOBIN. Logs of every step are kept in -logs.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// h2specModule is the h2spec version the long proofs use.
const h2specModule = "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible"

type row struct {
	Check   string `json:"check"`
	Figure  string `json:"figure"`
	Verdict string `json:"verdict"`
	Test    string `json:"test"`
}

type verifier struct {
	root     string
	logs     string
	fuzzTime time.Duration
	fuzzAll  bool
	rows     []row
}

func main() {
	os.Exit(run())
}

func run() int {
	steps := flag.String("steps", "lint,test,fuzz,long", "comma-separated steps to run: lint, test, fuzz, long")
	fuzzTime := flag.Duration("fuzztime", 30*time.Second, "fuzzing time per target")
	fuzzAll := flag.Bool("fuzz-all", false, "also fuzz the test double (sqltunnel/tdstest)")
	logs := flag.String("logs", "", "directory for step logs (default: a new temporary directory)")
	flag.Parse()

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 2
	}
	v := &verifier{root: root, logs: *logs, fuzzTime: *fuzzTime, fuzzAll: *fuzzAll}
	if v.logs == "" {
		if v.logs, err = os.MkdirTemp("", "gateway-verify-"); err != nil {
			fmt.Fprintln(os.Stderr, "verify:", err)
			return 2
		}
	} else if err := os.MkdirAll(v.logs, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 2
	}
	start := time.Now()
	for _, s := range strings.Split(*steps, ",") {
		stepStart := time.Now()
		fmt.Fprintf(os.Stderr, "verify: step %s\n", s)
		switch strings.TrimSpace(s) {
		case "lint":
			v.lint()
		case "test":
			v.goTest("test", "go test -race ./...", []string{"-race", "-timeout", "45m", "./..."}, "GATEWAY_E2E_BIG=1")
		case "fuzz":
			v.fuzz()
		case "long":
			v.long()
		case "":
		default:
			fmt.Fprintf(os.Stderr, "verify: unknown step %q\n", s)
			return 2
		}
		fmt.Fprintf(os.Stderr, "verify: step %s done in %s\n", s, time.Since(stepStart).Round(time.Second))
	}
	failed := v.print(os.Stdout, time.Since(start))
	fmt.Fprintf(os.Stdout, "logs: %s\n", v.logs)
	if failed {
		return 1
	}
	return 0
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the gateway module")
	}
	return filepath.Dir(mod), nil
}

func (v *verifier) add(r row) { v.rows = append(v.rows, r) }

// command runs name args in the module root with extra environment,
// writing its output to logs/logName, and returns the output and error.
func (v *verifier) command(ctx context.Context, logName string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = v.root
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	logFile, err := os.Create(filepath.Join(v.logs, logName))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout = io.MultiWriter(&buf, logFile)
	cmd.Stderr = cmd.Stdout
	err = cmd.Run()
	return buf.Bytes(), err
}

func (v *verifier) lint() {
	out, err := v.command(context.Background(), "lint.log", nil, "make", "lint")
	r := row{Check: "lint: gofmt, vet, GOOS=windows build, staticcheck, golangci-lint (Linux and Windows)", Verdict: "PASS", Figure: "clean"}
	if err != nil {
		r.Verdict, r.Figure = "FAIL", lastLines(out, 3)
	}
	v.add(r)
}

// testEvent is one line of go test -json.
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// goTest runs go test -json with args and the proof report, and adds a
// summary row plus the rows the tests reported.
func (v *verifier) goTest(name, check string, args []string, env ...string) {
	report := filepath.Join(v.logs, name+"-report.jsonl")
	_ = os.Remove(report)
	env = append(env, "GATEWAY_PROOF_REPORT="+report, "GATEWAY_E2E_LOGDIR="+filepath.Join(v.logs, name+"-gateway-logs"))
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Minute)
	defer cancel()
	out, err := v.command(ctx, name+".json", env, "go", append([]string{"test", "-json", "-count=1"}, args...)...)

	pass, skip := 0, 0
	var fails []string
	pkgs := map[string]bool{}
	pkgFail := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Package != "" {
			pkgs[e.Package] = true
		}
		switch {
		case e.Test == "" && e.Action == "fail":
			pkgFail[e.Package] = true
		case e.Test == "":
		case e.Action == "pass":
			pass++
		case e.Action == "skip":
			skip++
		case e.Action == "fail":
			fails = append(fails, strings.TrimPrefix(e.Package, "github.com/gateway-project/gateway/")+"."+e.Test)
		}
	}
	r := row{Check: check, Verdict: "PASS",
		Figure: fmt.Sprintf("%d packages, %d tests/subtests passed, %d skipped, %d failed", len(pkgs), pass, skip, len(fails))}
	if err != nil || len(fails) > 0 || len(pkgFail) > 0 {
		r.Verdict = "FAIL"
		if len(fails) > 0 {
			r.Figure += ": " + strings.Join(firstN(topLevel(fails), 6), ", ")
		} else {
			var p []string
			for k := range pkgFail {
				p = append(p, strings.TrimPrefix(k, "github.com/gateway-project/gateway/"))
			}
			slices.Sort(p)
			r.Figure += fmt.Sprintf("; failed packages %v (%v)", p, err)
		}
	}
	v.add(r)
	v.addReport(report)
}

// addReport adds the rows tests wrote to the report file.
func (v *verifier) addReport(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for line := range strings.Lines(string(data)) {
		var r row
		if json.Unmarshal([]byte(line), &r) != nil {
			continue
		}
		if slices.ContainsFunc(v.rows, func(o row) bool { return o.Check == r.Check }) {
			r.Check += " (" + r.Test + ", again)"
		}
		v.add(r)
	}
}

// fuzzTarget is one fuzz function in one package.
type fuzzTarget struct{ pkg, name string }

func (v *verifier) fuzzTargets() ([]fuzzTarget, error) {
	out, err := v.command(context.Background(), "fuzz-list.log", nil, "go", "test", "-list", "^Fuzz", "./sqltunnel/...")
	if err != nil {
		return nil, fmt.Errorf("listing fuzz targets: %w\n%s", err, out)
	}
	var targets []fuzzTarget
	var names []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Fuzz"):
			names = append(names, line)
		case strings.HasPrefix(line, "ok"):
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			pkg := "./" + strings.TrimPrefix(strings.TrimPrefix(f[1], "github.com/gateway-project/gateway"), "/")
			if strings.Contains(pkg, "tdstest") && !v.fuzzAll {
				names = nil
				continue
			}
			for _, n := range names {
				targets = append(targets, fuzzTarget{pkg, n})
			}
			names = nil
		}
	}
	return targets, nil
}

var execsRE = regexp.MustCompile(`execs: (\d+) \((\d+)/sec\), new interesting: (\d+) \(total: (\d+)\)`)

func (v *verifier) fuzz() {
	targets, err := v.fuzzTargets()
	if err != nil || len(targets) == 0 {
		v.add(row{Check: "fuzz targets", Verdict: "FAIL", Figure: fmt.Sprint("no fuzz target found: ", err)})
		return
	}
	for _, tg := range targets {
		check := fmt.Sprintf("fuzz %s %s (%s)", strings.TrimPrefix(tg.pkg, "./"), tg.name, v.fuzzTime)
		corpus := filepath.Join(v.root, tg.pkg, "testdata", "fuzz", tg.name)
		before := listDir(corpus)
		ctx, cancel := context.WithTimeout(context.Background(), v.fuzzTime+10*time.Minute)
		out, err := v.command(ctx, "fuzz-"+tg.name+".log", nil, "go", "test", "-run", "^$",
			"-fuzz", "^"+tg.name+"$", "-fuzztime", v.fuzzTime.String(), "-fuzzminimizetime", "2s", tg.pkg)
		cancel()
		var crashers []string
		for _, f := range listDir(corpus) {
			if !slices.Contains(before, f) {
				crashers = append(crashers, filepath.Join(tg.pkg, "testdata", "fuzz", tg.name, f))
			}
		}
		figure := "no progress line"
		if m := execsRE.FindAllSubmatch(out, -1); len(m) > 0 {
			last := m[len(m)-1]
			execs, _ := strconv.Atoi(string(last[1]))
			figure = fmt.Sprintf("%d execs (%.0f/s), corpus %s (+%s new)", execs, float64(execs)/v.fuzzTime.Seconds(), last[4], last[3])
		}
		r := row{Check: check, Verdict: "PASS", Figure: figure + ", 0 crashers"}
		switch {
		case len(crashers) > 0:
			r.Verdict, r.Figure = "FAIL", fmt.Sprintf("%s, %d crasher(s): %s", figure, len(crashers), strings.Join(crashers, " "))
		case err != nil && bytes.Contains(out, []byte("context deadline exceeded")) && !bytes.Contains(out, []byte("Failing input")):
			r.Figure += " (ended with Go's fuzztime deadline race, go.dev/issue/75804: no crasher written)"
		case err != nil:
			r.Verdict, r.Figure = "FAIL", figure+": "+lastLines(out, 4)
		}
		v.add(r)
	}
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// long runs the TestVerify* proofs.
func (v *verifier) long() {
	env := []string{"GATEWAY_PROOF_LONG=1"}
	h2spec, err := v.h2spec()
	if err != nil {
		v.add(row{Check: "h2spec install", Verdict: "FAIL", Figure: err.Error()})
	} else {
		env = append(env, "H2SPEC="+h2spec)
	}
	v.goTest("long", "long proofs: go test -run '^TestVerify' ./test", []string{"-timeout", "60m", "-run", "^TestVerify", "./test"}, env...)
}

// h2spec finds or installs h2spec.
func (v *verifier) h2spec() (string, error) {
	if p := os.Getenv("H2SPEC"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p, nil
	}
	gobin := filepath.Join(v.logs, "gobin")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := v.command(ctx, "h2spec-install.log", []string{"GOBIN=" + gobin, "GOFLAGS=-mod=mod"}, "go", "install", h2specModule)
	if err != nil {
		return "", fmt.Errorf("go install %s: %v: %s", h2specModule, err, lastLines(out, 2))
	}
	return filepath.Join(gobin, "h2spec"), nil
}

// print writes the table and reports whether a check failed.
func (v *verifier) print(w io.Writer, took time.Duration) (failed bool) {
	const checkWidth, figureWidth = 58, 96
	line := strings.Repeat("-", checkWidth+figureWidth+12)
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "%-*s | %-*s | %s\n", checkWidth, "check", figureWidth, "figure", "verdict")
	fmt.Fprintln(w, line)
	counts := map[string]int{}
	for _, r := range v.rows {
		counts[r.Verdict]++
		if r.Verdict == "FAIL" {
			failed = true
		}
		checks := wrap(r.Check, checkWidth)
		figures := wrap(r.Figure, figureWidth)
		for i := range max(len(checks), len(figures)) {
			c, f, verdict := "", "", ""
			if i < len(checks) {
				c = checks[i]
			}
			if i < len(figures) {
				f = figures[i]
			}
			if i == 0 {
				verdict = r.Verdict
			}
			fmt.Fprintf(w, "%-*s | %-*s | %s\n", checkWidth, c, figureWidth, f, verdict)
		}
	}
	fmt.Fprintln(w, line)
	result := "PASS"
	if failed {
		result = "FAIL"
	}
	fmt.Fprintf(w, "verify: %s — %d passed, %d failed, %d skipped, in %s\n", result, counts["PASS"], counts["FAIL"], counts["SKIP"], took.Round(time.Second))
	return failed
}

// wrap splits s into lines of at most width runes, at spaces when it can.
func wrap(s string, width int) []string {
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		words := strings.Fields(para)
		cur := ""
		for _, word := range words {
			for len([]rune(word)) > width {
				if cur != "" {
					lines = append(lines, cur)
					cur = ""
				}
				r := []rune(word)
				lines = append(lines, string(r[:width]))
				word = string(r[width:])
			}
			switch {
			case cur == "":
				cur = word
			case len([]rune(cur))+1+len([]rune(word)) <= width:
				cur += " " + word
			default:
				lines = append(lines, cur)
				cur = word
			}
		}
		if cur != "" {
			lines = append(lines, cur)
		}
	}
	if len(lines) == 0 {
		lines = []string{""}
	}
	return lines
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// topLevel keeps the failed tests whose parent did not fail as well, so
// that a failing subtest is named once, by its full name.
func topLevel(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.ContainsFunc(names, func(o string) bool { return strings.HasPrefix(o, n+"/") }) {
			out = append(out, n)
		}
	}
	return out
}
