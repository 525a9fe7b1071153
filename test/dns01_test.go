package test

import (
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/tlsmgr/rfc2136/bindtest"
	"github.com/gateway-project/gateway/tlsmgr/route53/r53test"
)

// requireTools fails the test when CI is set and a real server it needs is
// missing (CI installs them: .ci/install-deps), else skips it.
func requireTools(t *testing.T, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil && !executable("/usr/sbin/"+bin) {
			requireClient(t, err, "the Debian packages pebble, bind9 and bind9-dnsutils")
		}
	}
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
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
// signed updates: certificates for app.internal.test, *.internal.test and
// the SQL listener's *.db.internal.test are served and verify against
// pebble's root (a TLS client, and go-mssqldb through the listener), and no
// challenge record is left. With a wrong TSIG secret the gateway stops
// with an error naming the server and the key, and nothing is stored.
func TestDNS01BIND(t *testing.T) {
	t.Parallel()
	requireTools(t, "pebble", "named", "dig")
	bind := bindtest.Start(t, "internal.test")
	registerSecret(bind.Secret) // log hygiene: proof_secrets_test.go
	pb := launchPebble(t, testkit.MustFreePort(t), testkit.MustFreePort(t), bind.Addr)

	t.Run("obtains and serves", func(t *testing.T) {
		// A site with a name and a wildcard, and a SQL listener whose
		// hostname is a wildcard too: three DNS-01 certificates.
		backend := newSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
		cfg := newSQLConfig(t, "required", backend.srv.Addr(), backend.caFile)
		cfg.gwConfig = *dnsGatewayConfig(t, pb, bind, "E2E_TSIG_SECRET", "app.internal.test", "*.internal.test")
		cfg.SQL[0].Hostname = "*.db.internal.test"
		start := time.Now()
		g := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", cfg.write(t)}, env: []string{"E2E_TSIG_SECRET=" + bind.Secret}})
		ready := g.waitLog(t, 90*time.Second, `"gateway ready"`, msgIs("gateway ready"))
		t.Logf("gateway ready with three DNS-01 certificates in %s", time.Since(start).Round(time.Millisecond))
		rootPEM := pb.issuingRoot(t)
		roots := testpki.MustPoolOf(t, rootPEM)
		for name, want := range map[string]string{"app.internal.test": "app.internal.test", "ward7.internal.test": "*.internal.test"} {
			state, err := handshake(ready.str("https_addr"), name, roots)
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
		// go-mssqldb verifies the wildcard the SQL listener serves for the
		// name it connects with, against pebble's root.
		db := openMSSQL(t, mssqlDSN(ready.str("sql_addr"), map[string]string{
			"encrypt": "true", "certificate": writeFile(t, t.TempDir(), "pebble-root.pem", rootPEM), "hostNameInCertificate": "ehr.db.internal.test"}))
		if err := mssqlQueries(sqlCtx(t), db); err != nil {
			t.Errorf("SQL through the listener with a wildcard hostname: %v", err)
		}
		_ = db.Close()
		host, port, _ := net.SplitHostPort(bind.Addr)
		for _, name := range []string{"_acme-challenge.app.internal.test", "_acme-challenge.internal.test", "_acme-challenge.db.internal.test"} {
			out, err := exec.Command("dig", "@"+host, "-p", port, name, "TXT", "+short").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("dig %s TXT after the obtain: %q %v", name, out, err)
			}
		}
		g.signal(t, syscall.SIGTERM)
		if code := g.waitExit(t, 30*time.Second); code != 0 {
			t.Errorf("gateway exited %d after SIGTERM", code)
		}
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

// TestDNS01Route53 runs the real binary with the route53 provider: the AWS
// SDK takes its credentials from the environment (the default chain) and is
// pointed at the Route 53 double with the SDK's own endpoint setting
// (AWS_ENDPOINT_URL_ROUTE_53, not a gateway option); the double checks
// every signature and change batch and serves its zone as DNS to pebble.
// No log line of the gateway, at debug, carries the secret key or the
// session token.
func TestDNS01Route53(t *testing.T) {
	t.Parallel()
	requireTools(t, "pebble")
	d := r53test.Start(t)
	d.AddZone("clinic.example", false)
	dnsAddr := d.ServeDNS(t)
	registerSecret(d.SecretKey) // log hygiene: proof_secrets_test.go
	registerSecret(d.SessionToken)
	pb := launchPebble(t, testkit.MustFreePort(t), testkit.MustFreePort(t), dnsAddr)

	cfg := newConfig(t, newEchoBackend(t, nil).URL, "*.clinic.example")
	cfg.Log.Level = "debug"
	cfg.TLS.Issuer = "acme"
	cfg.TLS.ACME = &gwACME{
		CA: pb.directory, CARoot: pb.listenerCertFile,
		DisableHTTPChallenge: true, DisableTLSALPNChallenge: true,
		DNS: &gwDNS{Provider: "route53", PropagationTimeout: "1m", Resolvers: []string{dnsAddr}},
	}
	none := filepath.Join(t.TempDir(), "none")
	g := startGateway(t, cfg.write(t),
		"AWS_ACCESS_KEY_ID="+d.AccessKey, "AWS_SECRET_ACCESS_KEY="+d.SecretKey, "AWS_SESSION_TOKEN="+d.SessionToken,
		"AWS_ENDPOINT_URL_ROUTE_53="+d.URL, "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=", "AWS_PROFILE=",
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none)
	state, err := handshake(g.httpsAddr, "ehr.clinic.example", testpki.MustPoolOf(t, pb.issuingRoot(t)))
	if err != nil {
		t.Fatalf("the wildcard certificate does not verify against pebble's root: %v", err)
	}
	if got := state.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{"*.clinic.example"}) {
		t.Errorf("served %v", got)
	}
	g.stop(t)
	if v := d.Violations(); len(v) > 0 {
		t.Errorf("the double refused requests the real API would refuse:\n%s", strings.Join(v, "\n"))
	}
	if v := d.TXT("_acme-challenge.clinic.example"); len(v) != 0 {
		t.Errorf("challenge record left behind: %q", v)
	}
	lines := g.stderr.all()
	for _, line := range lines {
		if strings.Contains(line, d.SecretKey) || strings.Contains(line, d.SessionToken) {
			t.Errorf("a credential appears in a gateway log line: %s", line)
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "route53 change in sync") }) {
		t.Errorf("the debug log shows no route53 change")
	}
}

// TestEABPebble runs the real binary against pebble requiring external
// account binding: with the right MAC key the account is created and the
// certificate served; with a wrong one the gateway stops with an error
// saying the binding of that key ID was refused.
func TestEABPebble(t *testing.T) {
	t.Parallel()
	requireTools(t, "pebble", "named")
	const kid, mac = "kid-clinic", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	registerSecret(mac)
	bind := bindtest.Start(t, "internal.test")
	registerSecret(bind.Secret)
	pb := launchPebble(t, testkit.MustFreePort(t), testkit.MustFreePort(t), bind.Addr, map[string]string{kid: mac})
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"wrong MAC key", "c29tZS1vdGhlci1tYWMta2V5LXRoYXQtcGViYmxlLWRvZXMtbm90LWtub3c", false},
		{"right MAC key", mac, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dnsGatewayConfig(t, pb, bind, "E2E_TSIG_SECRET", "eab.internal.test")
			cfg.TLS.ACME.EAB = &gwEAB{KeyID: kid, MACKeyEnv: "E2E_EAB_MAC"}
			env := []string{"E2E_TSIG_SECRET=" + bind.Secret, "E2E_EAB_MAC=" + tc.key}
			if tc.ok {
				g := startGateway(t, cfg.write(t), env...)
				if _, err := handshake(g.httpsAddr, "eab.internal.test", testpki.MustPoolOf(t, pb.issuingRoot(t))); err != nil {
					t.Errorf("certificate obtained with EAB does not verify: %v", err)
				}
				g.stop(t)
				return
			}
			p := startProc(t, procSpec{name: "gateway", bin: gatewayBin, args: []string{"run", "--config", cfg.write(t)}, env: env})
			if code := p.waitExit(t, 60*time.Second); code != 1 {
				t.Fatalf("gateway exited %d with a wrong EAB MAC key, want 1", code)
			}
			log := strings.Join(p.stderr.all(), "\n")
			if !strings.Contains(log, "refused the external account binding of key_id "+kid) {
				t.Errorf("the error does not say the binding was refused:\n%s", log)
			}
		})
	}
}
