package test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
)

// TestCheckExamples runs `gateway check` on every shipped example: each must
// pass and the report must show each of its listeners.
func TestCheckExamples(t *testing.T) {
	// acme-dns.yaml names the environment variable of its TSIG secret,
	// which must be set for the file to validate. Setting it keeps this
	// test out of the parallel phase; its subtests still run together.
	t.Setenv("ACME_TSIG_SECRET", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
	// cluster.yaml: the storage key and Redis password it names.
	t.Setenv("CLUSTER_STORAGE_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	t.Setenv("CLUSTER_REDIS_PASSWORD", "example")
	files, err := filepath.Glob(filepath.Join("..", "configs", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			loaded, err := configs.Load(configs.Options{File: file})
			if err != nil {
				t.Fatalf("the example does not load: %v", err)
			}
			var env []string
			if filepath.Base(file) == "cluster.yaml" {
				// Its Redis is asked whether it answers: point it at a
				// closed loopback port instead of the example's host.
				env = []string{"GATEWAY_STORAGE=redis://127.0.0.1:" + strconv.Itoa(testkit.MustFreePort(t)) + "/0"}
			}
			res := runCLI(t, env, "check", "--config", file)
			if res.code != 0 {
				t.Fatalf("gateway check: %s", res)
			}
			var listeners []string
			for _, addr := range []string{loaded.Admin.Listen, loaded.HTTP.Listen, loaded.HTTP.RedirectListen} {
				if addr != "" {
					listeners = append(listeners, addr)
				}
			}
			for _, s := range loaded.SQL {
				listeners = append(listeners, s.Listen, s.Upstream.Address, s.Hostname)
			}
			for _, s := range loaded.HTTP.Sites {
				listeners = append(listeners, s.Hosts...)
				listeners = append(listeners, s.Upstreams...)
			}
			for _, want := range listeners {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("the report does not show %q:\n%s", want, res.stdout)
				}
			}
		})
	}
}

// TestCheckBadConfig checks that every problem is reported, each naming its
// key, with exit code 1, by both `check` and `run`.
func TestCheckBadConfig(t *testing.T) {
	t.Parallel()
	const site = `
admin: {listen: ""}
http:
  listen: 127.0.0.1:0
  redirect_listen: ""
  sites:
    - hosts: [app.test]
      upstreams: [http://127.0.0.1:8080]
`
	cases := []struct {
		name     string
		yaml     string
		wantKeys []string
	}{
		{
			name:     "unknown_key_and_bad_duration",
			yaml:     site + "log: {levle: debug}\ndrain_timeout: soon\n",
			wantKeys: []string{"log.levle", "drain_timeout"},
		},
		{
			name:     "unknown_key_and_bad_enum",
			yaml:     site + "tls: {isuer: internal, min_version: \"1.1\"}\n",
			wantKeys: []string{"tls.isuer", "tls.min_version"},
		},
		{
			name:     "two_bad_values",
			yaml:     site + "log: {level: loud}\ntls: {min_version: \"1.0\"}\n",
			wantKeys: []string{"log.level", "tls.min_version"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, t.TempDir(), "bad.yaml", []byte(tc.yaml))
			for _, cmd := range []string{"check", "run"} {
				res := runCLI(t, nil, cmd, "--config", file, "--storage", t.TempDir())
				if res.code != 1 {
					t.Errorf("gateway %s: exit %d, want 1\n%s", cmd, res.code, res)
					continue
				}
				for _, key := range tc.wantKeys {
					if !strings.Contains(res.stdout+res.stderr, key) {
						t.Errorf("gateway %s does not name %s:\n%s", cmd, key, res)
					}
				}
			}
		})
	}
}

// TestCLIUsage covers the exit codes and output of the small commands.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
	}{
		{name: "unknown_command", args: []string{"foo"}, wantCode: 2},
		{name: "unknown_flag", args: []string{"run", "--no-such-flag"}, wantCode: 2},
		{name: "check_extra_argument", args: []string{"check", "extra"}, wantCode: 2},
		{name: "ca_without_subcommand", args: []string{"ca"}, wantCode: 2},
		{name: "missing_config_file", args: []string{"check", "--config", missing}, wantCode: 1},
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: "gateway "},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantOut: "gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, tc.args...)
			if res.code != tc.wantCode {
				t.Fatalf("gateway %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), res.code, tc.wantCode, res)
			}
			if !strings.Contains(res.stdout, tc.wantOut) {
				t.Errorf("gateway %s: stdout lacks %q\n%s", strings.Join(tc.args, " "), tc.wantOut, res)
			}
			if tc.wantCode != 0 && strings.TrimSpace(res.stderr) == "" {
				t.Errorf("gateway %s failed without a message on stderr", strings.Join(tc.args, " "))
			}
		})
	}
}
