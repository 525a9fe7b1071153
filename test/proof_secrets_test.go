package test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Log hygiene (docs/architecture.md, "Cross-cutting rules": never log
// passwords, SSPI blobs, FedAuth tokens, cookies or Authorization headers).
//
// Every gateway process the suite starts (startProc with gatewayBin, and
// runCLI) has its standard error copied into one file of the e2e log
// directory: $GATEWAY_E2E_LOGDIR when set (kept), else
// os.TempDir()/gateway-e2e-logs-<pid> (removed after a clean scan). Tests
// register the secrets they hand to clients and backends with
// registerSecret; after m.Run, TestMain scans every log file for every
// registered secret, in the forms a careless log line would carry it (as is,
// JSON-escaped, URL-escaped, base64), and fails the run on any hit. The scan
// first proves itself on a planted canary (a negative control): if the canary
// is not found, the scan is broken and the run fails too.

var proofSecrets = struct {
	sync.Mutex
	set map[string]bool
}{set: map[string]bool{}}

// registerSecret adds s to the strings no gateway log may contain. Safe for
// concurrent use; empty strings are ignored.
func registerSecret(s string) {
	if s == "" {
		return
	}
	proofSecrets.Lock()
	proofSecrets.set[s] = true
	proofSecrets.Unlock()
}

func proofRegisteredSecrets() []string {
	proofSecrets.Lock()
	defer proofSecrets.Unlock()
	var out []string
	for s := range proofSecrets.set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

var (
	proofLogDirOnce sync.Once
	proofLogDirPath string
	proofLogDirErr  error
	proofLogDirKeep bool
	proofLogSeq     atomic.Int64
)

// e2eLogDir returns the directory gateway logs are collected in, creating
// it on first use.
func e2eLogDir() (string, error) {
	proofLogDirOnce.Do(func() {
		if d := os.Getenv("GATEWAY_E2E_LOGDIR"); d != "" {
			proofLogDirPath, proofLogDirKeep = d, true
		} else {
			proofLogDirPath = filepath.Join(os.TempDir(), fmt.Sprintf("gateway-e2e-logs-%d", os.Getpid()))
		}
		proofLogDirErr = os.MkdirAll(proofLogDirPath, 0o700)
	})
	return proofLogDirPath, proofLogDirErr
}

var proofUnsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// e2eLogFile opens a new file in the log directory for one process of test
// t; it is closed when the test ends (after the process has been waited
// for: t.Cleanup runs in reverse order).
func e2eLogFile(t *testing.T, what string) io.Writer {
	dir, err := e2eLogDir()
	if err != nil {
		t.Fatalf("e2e log directory: %v", err)
	}
	name := fmt.Sprintf("%04d-%s-%s.log", proofLogSeq.Add(1), t.Name(), what)
	f, err := os.Create(filepath.Join(dir, proofUnsafeFileChars.ReplaceAllString(name, "_")))
	if err != nil {
		t.Fatalf("e2e log file: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &proofLockedWriter{w: f}
}

// saveLog writes what a short-lived gateway command printed on standard
// error into the log directory.
func saveLog(t *testing.T, what string, data []byte) {
	w := e2eLogFile(t, what)
	_, _ = w.Write(data)
}

// proofLockedWriter serialises writes: exec copies stderr on one goroutine, but
// a file shared by a test and a process must not interleave.
type proofLockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *proofLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// proofSecretForms are the spellings of s a log line could carry: as is,
// escaped inside a JSON string, URL-escaped (a DSN, a query string) and
// base64 (a Basic Authorization header, an encoded blob).
func proofSecretForms(s string) []string {
	forms := []string{s}
	if j, err := json.Marshal(s); err == nil {
		forms = append(forms, string(j[1:len(j)-1]))
	}
	forms = append(forms, url.QueryEscape(s), url.PathEscape(s))
	if len(s) >= 6 {
		forms = append(forms, base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)))
	}
	slices.Sort(forms)
	return slices.Compact(forms)
}

// proofSecretHit is one secret found in one log file.
type proofSecretHit struct {
	file, secret, form string
	line               int
}

func (h proofSecretHit) String() string {
	// Never print the secret itself: the report may be published.
	return fmt.Sprintf("%s:%d: a registered secret (%d bytes, first %q) in form %q", filepath.Base(h.file), h.line, len(h.secret), h.secret[:min(2, len(h.secret))], proofFormKind(h.secret, h.form))
}

func proofFormKind(secret, form string) string {
	switch {
	case form == secret:
		return "plain"
	case form == base64.StdEncoding.EncodeToString([]byte(secret)), form == base64.RawURLEncoding.EncodeToString([]byte(secret)):
		return "base64"
	case form == url.QueryEscape(secret), form == url.PathEscape(secret):
		return "url-escaped"
	}
	return "json-escaped"
}

// proofScanLogs searches every file of dir for every form of every secret.
func proofScanLogs(dir string, secretList []string) (files int, hits []proofSecretHit, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return files, hits, err
		}
		files++
		for _, s := range secretList {
			for _, form := range proofSecretForms(s) {
				if i := bytes.Index(data, []byte(form)); i >= 0 {
					hits = append(hits, proofSecretHit{file: path, secret: s, form: form, line: 1 + bytes.Count(data[:i], []byte("\n"))})
				}
			}
		}
	}
	return files, hits, nil
}

// proofCanary is planted in the log directory before the real scan: the
// scan must find it, or it proves nothing.
const proofCanary = "Canary-Pa55w0rd;planted-by-proof"

// finishLogHygiene runs after m.Run: it proves the scanner on a canary, then
// scans the collected logs for the registered proofSecrets. It returns the exit
// code for the test binary.
func finishLogHygiene(code int) int {
	dir, err := e2eLogDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "log hygiene:", err)
		return 1
	}
	secretList := proofRegisteredSecrets()
	canary := filepath.Join(dir, "zz-canary.log")
	line := fmt.Sprintf(`{"level":"info","msg":"planted","dsn":"sqlserver://u:%s@h","auth":"Basic %s"}`+"\n",
		url.QueryEscape(proofCanary), base64.StdEncoding.EncodeToString([]byte(proofCanary)))
	if err := os.WriteFile(canary, []byte(line), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "log hygiene:", err)
		return 1
	}
	_, canaryHits, err := proofScanLogs(dir, []string{proofCanary})
	_ = os.Remove(canary)
	kinds := map[string]bool{}
	for _, h := range canaryHits {
		kinds[proofFormKind(h.secret, h.form)] = true
	}
	controlOK := err == nil && kinds["url-escaped"] && kinds["base64"] && !kinds["plain"]
	files, hits, err := proofScanLogs(dir, secretList)
	verdict, figure := "PASS", fmt.Sprintf("%d gateway logs × %d secrets: 0 hits; planted canary found (%d forms)", files, len(secretList), len(canaryHits))
	switch {
	case err != nil:
		verdict, figure = "FAIL", "scan failed: "+err.Error()
	case !controlOK:
		verdict, figure = "FAIL", fmt.Sprintf("negative control failed: planted canary found as %v, want url-escaped and base64", kinds)
	case len(hits) > 0:
		verdict, figure = "FAIL", fmt.Sprintf("%d gateway logs × %d secrets: %d hits", files, len(secretList), len(hits))
	}
	writeProofRow(proofRowData{Check: "log hygiene (gateway stderr of every e2e test)", Figure: figure, Verdict: verdict, Test: "TestMain"})
	if verdict == "FAIL" {
		fmt.Fprintf(os.Stderr, "log hygiene: FAIL: %s (logs kept in %s)\n", figure, dir)
		for _, h := range hits {
			fmt.Fprintln(os.Stderr, "  ", h)
		}
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "log hygiene: %s\n", figure)
	}
	if !proofLogDirKeep && code == 0 {
		_ = os.RemoveAll(dir)
	}
	return code
}

// TestProofLogScanner is the scanner's own negative control: a planted
// secret is found in each form a log line could carry it, and a clean log
// gives no hit.
func TestProofLogScanner(t *testing.T) {
	t.Parallel()
	const planted = `Sw0rd"fish;Pl4nted`
	forms := map[string]string{
		"plain":        `password=Sw0rd"fish;Pl4nted`,
		"url-escaped":  `{"msg":"x","dsn":"sqlserver://u:` + url.QueryEscape(planted) + `@h"}`,
		"base64":       `{"msg":"x","authorization":"Basic ` + base64.StdEncoding.EncodeToString([]byte(planted)) + `"}`,
		"json-escaped": `{"msg":"x","password":"Sw0rd\"fish;Pl4nted"}`,
	}
	for name, line := range forms {
		dir := t.TempDir()
		writeFile(t, dir, "gw.log", []byte("{\"msg\":\"clean\"}\n"+line+"\n"))
		_, hits, err := proofScanLogs(dir, []string{planted})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) == 0 {
			t.Errorf("%s: the planted secret was not found", name)
		} else if hits[0].line != 2 {
			t.Errorf("%s: hit on line %d, want 2", name, hits[0].line)
		}
		if strings.Contains(proofFirstHit(hits), planted) {
			t.Errorf("the hit report prints the secret: %s", proofFirstHit(hits))
		}
	}
	dir := t.TempDir()
	writeFile(t, dir, "gw.log", []byte(`{"msg":"sql login","user":"alice","outcome":"ok"}`+"\n"))
	if _, hits, err := proofScanLogs(dir, []string{planted}); err != nil || len(hits) != 0 {
		t.Errorf("clean log: hits %v, err %v", hits, err)
	}
}

func proofFirstHit(h []proofSecretHit) string {
	if len(h) == 0 {
		return ""
	}
	return h[0].String()
}
