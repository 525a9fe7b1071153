package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/configs"
)

// The Windows service's command line is built and parsed here on every
// platform; only the calls into the service manager are Windows-only.

func TestServiceConfigPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == configs.EnvConfigFile {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		flag    string
		env     string
		want    string
		wantErr string
	}{
		{"absolute flag", file, "", file, ""},
		{"relative flag made absolute", "gateway.yaml", "", file, ""},
		{"environment when no flag", "", "gateway.yaml", file, ""},
		{"flag beats environment", file, "other.yaml", file, ""},
		{"neither", "", "", "", "--config"},
		{"missing file", "nope.yaml", "", "", "nope.yaml"},
		{"directory", dir, "", "", "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := serviceConfigPath(tc.flag, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("serviceConfigPath = %q, %v; want an error mentioning %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || !filepath.IsAbs(got) {
				t.Fatalf("serviceConfigPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestServiceArgsRoundTrip(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "my config.yaml")
	args := serviceArgs(cfg, "gateway-crm")
	if !slices.Equal(args[:3], []string{"run", "--config", cfg}) {
		t.Fatalf("serviceArgs = %q, want run --config FILE first", args)
	}
	name, rest := splitServiceArgs(args)
	if name != "gateway-crm" || !slices.Equal(rest, []string{"run", "--config", cfg}) {
		t.Errorf("splitServiceArgs = %q, %q", name, rest)
	}
	if got := configFromArgs(rest); got != cfg {
		t.Errorf("configFromArgs = %q, want %q", got, cfg)
	}
	if name, rest := splitServiceArgs([]string{"run", "--service-name=x", "-c", "f.yaml"}); name != "x" || configFromArgs(rest) != "f.yaml" {
		t.Errorf("splitServiceArgs with = form: %q, %q", name, rest)
	}
	if name, _ := splitServiceArgs([]string{"run"}); name != defaultServiceName {
		t.Errorf("default service name %q", name)
	}
	if got := configFromArgs([]string{"run", "--config=a.yaml"}); got != "a.yaml" {
		t.Errorf("configFromArgs(--config=) = %q", got)
	}
}

func TestCheckServiceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"gateway": true, "gateway-crm_2.test": true, "": false, "has space": false, `back\slash`: false,
		"-leading": false, strings.Repeat("x", 81): false,
	} {
		if err := checkServiceName(name); (err == nil) != ok {
			t.Errorf("checkServiceName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestServiceLogFile(t *testing.T) {
	got := serviceLogFile(configs.Config{Storage: filepath.Join("C:", "gateway", "data")})
	if filepath.Base(got) != "gateway.log" || filepath.Dir(got) != filepath.Join("C:", "gateway", "data") {
		t.Errorf("serviceLogFile = %q", got)
	}
}

// TestServiceOffWindows: the service commands are a usage error elsewhere.
func TestServiceOffWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has services")
	}
	err := serviceSupported("install")
	var ue usageError
	if !errors.As(err, &ue) || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "only on Windows") {
		t.Fatalf("serviceSupported = %v (exit %d), want a usage error saying only on Windows", err, exitCode(err))
	}
	if runningAsService() {
		t.Error("runningAsService is true off Windows")
	}
}
