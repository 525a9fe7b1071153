package test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOpsSystemdUnit checks the shipped systemd unit: readiness by
// sd_notify, reload by SIGHUP, and the hardening the README promises; and,
// where systemd-analyze is installed, that systemd accepts the file.
func TestOpsSystemdUnit(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "configs", "gateway.service")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("not KEY=VALUE: %q", line)
			continue
		}
		have[k] = append(have[k], v)
	}
	for key, want := range map[string]string{
		"Type":                  "notify",
		"ExecStart":             "/usr/local/bin/gateway run --config /etc/gateway/gateway.yaml",
		"ExecReload":            "/bin/kill -HUP $MAINPID",
		"User":                  "gateway",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ReadWritePaths":        "/var/lib/gateway",
		"PrivateTmp":            "yes",
		"ProtectHome":           "yes",
		"Environment":           "GATEWAY_STORAGE=/var/lib/gateway",
	} {
		found := false
		for _, v := range have[key] {
			found = found || v == want
		}
		if !found {
			t.Errorf("%s: %s=%s missing (have %q)", path, key, want, have[key])
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil || runtime.GOOS != "linux" {
		t.Skip("systemd-analyze not installed (Debian package systemd): the unit's syntax is not verified")
	}
	// verify checks that ExecStart exists: point it at the binary under test.
	unit := filepath.Join(t.TempDir(), "gateway.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/gateway", gatewayBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestOpsServiceCommandsOffWindows checks that `gateway service` explains
// itself on a system without Windows services, with the usage exit code.
func TestOpsServiceCommandsOffWindows(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("installs a real service on Windows")
	}
	file := newConfig(t, "http://127.0.0.1:1", "app.test").write(t)
	for _, args := range [][]string{
		{"service", "install", "--config", file},
		{"service", "uninstall"},
		{"service", "start"},
		{"service", "stop"},
	} {
		res := runCLI(t, nil, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "only on Windows") || !strings.Contains(res.stderr, "gateway.service") {
			t.Errorf("gateway %s: want exit 2 saying only on Windows and naming the systemd unit; got %s", strings.Join(args, " "), res)
		}
	}
	if res := runCLI(t, nil, "service"); res.code != 2 {
		t.Errorf("gateway service without a subcommand: %s, want exit 2", res)
	}
}
