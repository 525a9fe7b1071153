package test

import (
	"io/fs"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/tlsmgr/rfc2136/bindtest"
)

// requireTools fails the test when CI is set and a real server it needs is
// missing (CI installs them: .ci/install-deps), else skips it.
func requireTools(t *testing.T, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			requireClient(t, err, "the Debian packages pebble, bind9 and bind9-dnsutils")
		}
	}
}

// dnsGatewayConfig is a gateway whose only way to a certificate is ACME
// DNS-01 through the BIND server s: HTTP-01 and TLS-ALPN-01 are disabled,
// and no listener of pebble's could reach it anyway.
func dnsGatewayConfig(t *testing.T, pb *pebbleServer, s *bindtest.Server, secretEnv string, hosts ...string) *gwConfig {
	t.Helper()
	cfg := newConfig(t, newEchoBackend(t, nil).URL, hosts...)
	cfg.TLS.Issuer = "acme"
	cfg.TLS.ACME = &gwACME{
		CA:                      pb.directory,
		CARoot:                  pb.listenerCertFile,
		DisableHTTPChallenge:    true,
		DisableTLSALPNChallenge: true,
		DNS: &gwDNS{
			Provider:           "rfc2136",
			Server:             s.Addr,
			TSIGKeyName:        s.KeyName,
			TSIGSecretEnv:      secretEnv,
			PropagationTimeout: "1m",
			Resolvers:          []string{s.Addr},
		},
	}
	return cfg
}

// TestDNS01BIND runs the real binary against pebble, which validates the
// DNS-01 records the gateway writes into a real BIND 9 zone through TSIG
// signed updates: a certificate for app.internal.test and one for
// *.internal.test are served and verify against pebble's root, and no
// challenge record is left. With a wrong TSIG secret the gateway stops
// with an error naming the server and the key, and nothing is stored.
func TestDNS01BIND(t *testing.T) {
	t.Parallel()
	requireTools(t, "pebble", "named", "dig")
	bind := bindtest.Start(t, "internal.test")
	registerSecret(bind.Secret) // log hygiene: proof_secrets_test.go
	pb := launchPebble(t, freePort(t), freePort(t), bind.Addr)

	t.Run("obtains and serves", func(t *testing.T) {
		cfg := dnsGatewayConfig(t, pb, bind, "E2E_TSIG_SECRET", "app.internal.test", "*.internal.test")
		start := time.Now()
		g := startGateway(t, cfg.write(t), "E2E_TSIG_SECRET="+bind.Secret)
		t.Logf("gateway ready with two DNS-01 certificates in %s", time.Since(start).Round(time.Millisecond))
		roots := certPool(t, pb.issuingRoot(t))
		for name, want := range map[string]string{"app.internal.test": "app.internal.test", "ward7.internal.test": "*.internal.test"} {
			state, err := handshake(g.httpsAddr, name, roots)
			if err != nil {
				t.Errorf("%s: the served certificate does not verify against pebble's root: %v", name, err)
				continue
			}
			if got := state.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{want}) {
				t.Errorf("%s: served %v, want %s", name, got, want)
			}
		}
		if !strings.Contains(pb.proc.stdout.String(), "set VALID by completed challenge") {
			t.Errorf("pebble validated no challenge:\n%s", pb.proc.stdout.String())
		}
		host, port, _ := net.SplitHostPort(bind.Addr)
		for _, name := range []string{"_acme-challenge.app.internal.test", "_acme-challenge.internal.test"} {
			out, err := exec.Command("dig", "@"+host, "-p", port, name, "TXT", "+short").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("dig %s TXT after the obtain: %q %v", name, out, err)
			}
		}
		g.stop(t)
	})

	t.Run("wrong TSIG secret", func(t *testing.T) {
		cfg := dnsGatewayConfig(t, pb, bind, "E2E_TSIG_WRONG", "bad.internal.test")
		file := cfg.write(t)
		env := []string{"E2E_TSIG_WRONG=d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="}
		p := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", file}, env: env})
		if code := p.waitExit(t, 90*time.Second); code != 1 {
			t.Fatalf("gateway exited %d, want 1", code)
		}
		log := strings.Join(p.stderr.all(), "\n")
		for _, part := range []string{bind.Addr, bind.KeyName, "NOTAUTH", "BADSIG"} {
			if !strings.Contains(log, part) {
				t.Errorf("the gateway's error does not name %q:\n%s", part, log)
			}
		}
		var stored []string
		_ = filepath.WalkDir(cfg.Storage, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(path, "certificates") {
				stored = append(stored, path)
			}
			return nil
		})
		if len(stored) != 0 {
			t.Errorf("a failed obtain left files in storage: %v", stored)
		}
		// check, reading the same storage, still has the name to obtain.
		res := runCLI(t, env, "check", "--config", file)
		if res.code != 0 || !strings.Contains(res.stdout, "certificate bad.internal.test: will be obtained from ACME") ||
			!strings.Contains(res.stdout, "challenges dns-01") {
			t.Errorf("gateway check after the failed obtain:\n%s", res)
		}
	})
}

// TestCheckChallenges: gateway check names the challenges of each name
// and refuses a configuration with names no enabled challenge can
// validate.
func TestCheckChallenges(t *testing.T) {
	t.Parallel()
	cfg := newConfig(t, "http://127.0.0.1:1", "portal.clinic.example", "ehr.clinic.local")
	cfg.TLS.Issuer = "acme"
	cfg.TLS.ACME = &gwACME{CA: "https://127.0.0.1:1/dir"}
	res := runCLI(t, nil, "check", "--config", cfg.write(t))
	if res.code != 1 || !strings.Contains(res.stdout, "tls.acme: ehr.clinic.local looks internal") {
		t.Errorf("check of an internal name with HTTP-01 only:\n%s", res)
	}

	cfg.TLS.ACME.DNS = &gwDNS{Provider: "rfc2136", Server: "127.0.0.1:53", Resolvers: []string{"127.0.0.1"}}
	cfg.HTTP.Sites[0].Hosts = append(cfg.HTTP.Sites[0].Hosts, "*.clinic.example")
	res = runCLI(t, nil, "check", "--config", cfg.write(t))
	for _, want := range []string{
		"certificate portal.clinic.example: will be obtained from ACME https://127.0.0.1:1/dir at start; challenges dns-01, http-01, tls-alpn-01",
		"certificate ehr.clinic.local: will be obtained from ACME https://127.0.0.1:1/dir at start; challenges dns-01\n",
		"certificate *.clinic.example: will be obtained from ACME https://127.0.0.1:1/dir at start; challenges dns-01\n",
	} {
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("check lacks %q:\n%s", want, res)
		}
	}

	cfg.TLS.ACME.DNS = nil
	res = runCLI(t, nil, "check", "--config", cfg.write(t))
	if res.code != 1 || !strings.Contains(res.stdout, "http.sites[0].hosts[2]: \"*.clinic.example\" is a wildcard") {
		t.Errorf("check of a wildcard without DNS-01:\n%s", res)
	}
}
