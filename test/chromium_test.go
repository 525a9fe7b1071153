package test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Headless Chromium (Debian's chromium), for pages people look at: the
// audit report and the admin status page. It runs as a browser would for
// a user, with a throwaway profile and no network beyond the page.

// needChromium returns chromium's path, or skips (fails under CI).
func needChromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	requireClient(t, err, "the Debian packages chromium and fonts-dejavu-core")
	return p
}

// artifactDir is where tests keep what a person may want to look at
// after the run (screenshots): $GATEWAY_TEST_ARTIFACTS, else
// os.TempDir()/gateway-test-artifacts. It is not removed.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GATEWAY_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gateway-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromiumRun is one headless Chromium run: its stdout (the DOM with
// --dump-dom) and the console messages it logged.
type chromiumRun struct {
	stdout  string
	console []string // lines Chromium logged from the page's console
	errors  []string // of those, errors (and refused resources)
}

var reConsole = regexp.MustCompile(`(?i)CONSOLE\(|Uncaught|Refused to|Failed to load resource`)

// runChromium loads url headless and returns what it printed; extra are
// flags such as --dump-dom or --screenshot=FILE.
func runChromium(t *testing.T, url string, extra ...string) chromiumRun {
	t.Helper()
	bin := needChromium(t)
	profile := t.TempDir()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
		"--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"}, extra...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(childEnv(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	r := chromiumRun{stdout: stdout.String()}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if !reConsole.MatchString(line) {
			continue
		}
		r.console = append(r.console, line)
		if strings.Contains(line, ":ERROR:") || strings.Contains(line, "Uncaught") || strings.Contains(line, "Refused to") || strings.Contains(line, "Failed to load") {
			r.errors = append(r.errors, line)
		}
	}
	return r
}
