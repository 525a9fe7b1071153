package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/tlsmgr/rfc2136/bindtest"
	"github.com/gateway-project/gateway/tlsmgr/route53/r53test"
)

func TestChallenges(t *testing.T) {
	rfc := configs.ACMEDNS{Provider: configs.DNSProviderRFC2136}
	tests := []struct {
		name    string
		acme    configs.ACME
		host    string
		want    []string
		problem string
	}{
		{"public name", configs.ACME{}, "portal.clinic.example", []string{ChallengeHTTP01, ChallengeTLSALPN01}, ""},
		{"tls-alpn only", configs.ACME{DisableHTTPChallenge: true}, "portal.clinic.example", []string{ChallengeTLSALPN01}, ""},
		{"wildcard without dns", configs.ACME{}, "*.clinic.example", nil, "only with DNS-01"},
		{"internal without dns", configs.ACME{}, "sql01.clinic.local", nil, "looks internal"},
		{"single label", configs.ACME{}, "sql01", nil, "looks internal"},
		{"private address", configs.ACME{}, "10.0.1.7", nil, "is a private address"},
		{"everything off", configs.ACME{DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}, "portal.clinic.example", nil, "every challenge is disabled"},
		{"dns first, then the others", configs.ACME{DNS: rfc}, "portal.clinic.example", []string{ChallengeDNS01, ChallengeHTTP01, ChallengeTLSALPN01}, ""},
		{"dns for a wildcard", configs.ACME{DNS: rfc}, "*.clinic.example", []string{ChallengeDNS01}, ""},
		{"dns for an internal name", configs.ACME{DNS: rfc}, "sql01.clinic.local", []string{ChallengeDNS01}, ""},
		{"dns cannot prove an address", configs.ACME{DNS: rfc}, "10.0.1.7", nil, "DNS-01 cannot prove an address"},
		{"public address", configs.ACME{DNS: rfc}, "8.8.8.8", []string{ChallengeHTTP01, ChallengeTLSALPN01}, ""},
		{"dns only", configs.ACME{DNS: rfc, DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}, "portal.clinic.example", []string{ChallengeDNS01}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problem := Challenges(tc.acme, tc.host)
			if !slices.Equal(got, tc.want) || !strings.Contains(problem, tc.problem) || (tc.problem == "") != (problem == "") {
				t.Errorf("Challenges = %v, %q; want %v, %q", got, problem, tc.want, tc.problem)
			}
		})
	}
	// PlanSources reports the challenges, and a name none can validate as
	// a problem of tls.acme.
	cfg := configs.TLS{Issuer: configs.IssuerACME, ACME: configs.ACME{CA: "https://acme.test/dir"}}
	got, err := PlanSources(cfg, []string{"portal.clinic.example", "ehr.clinic.local"})
	var pe *PlanError
	if !errors.As(err, &pe) || len(pe.Problems) != 1 || pe.Problems[0].Key != "tls.acme" || !strings.Contains(pe.Problems[0].Message, "ehr.clinic.local") {
		t.Errorf("PlanSources error = %v", err)
	}
	if len(got) != 2 || !slices.Equal(got[0].Challenges, []string{ChallengeHTTP01, ChallengeTLSALPN01}) || got[1].Challenges != nil {
		t.Errorf("PlanSources = %+v", got)
	}
}

// dnsPebble is pebble resolving names through dnsServer, with no HTTP-01
// or TLS-ALPN-01 listener anywhere: DNS-01 is the only way through.
func dnsPebble(t *testing.T, dnsServer string, eab map[string]string) *pebble {
	t.Helper()
	bin, err := exec.LookPath("pebble")
	if err != nil {
		requireTool(t, "pebble not found: install the Debian package pebble")
	}
	return startPebble(t, bin, testkit.MustFreePort(t), testkit.MustFreePort(t), pebbleOpts{dnsServer: dnsServer, eabKeys: eab})
}

// requireTool skips a test whose real server is not installed, or fails
// it when CI is true: CI installs them all (.ci/install-deps).
func requireTool(t *testing.T, msg string) {
	t.Helper()
	if ci, _ := strconvParseBool(); ci {
		t.Fatal(msg + " (CI is set: real servers are required)")
	}
	t.Skip(msg)
}

func dnsACMEConfig(p *pebble, d configs.ACMEDNS) configs.TLS {
	cfg := acmeConfig(p.dir)
	cfg.ACME.CARoot = p.caRootFile
	cfg.ACME.DisableHTTPChallenge, cfg.ACME.DisableTLSALPNChallenge = true, true
	d.PropagationTimeout = time.Minute
	cfg.ACME.DNS = d
	return cfg
}

// observedManager is a Manager whose log lines (certmagic's included, at
// debug) are kept for inspection.
func observedManager(t *testing.T, cfg configs.TLS, storage string) (*Manager, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	m, err := New(cfg, storage, zap.New(core))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m, logs
}

// TestDNS01BIND obtains a certificate for a name and for a wildcard from
// pebble, which validates the TXT records the rfc2136 provider wrote into
// a real BIND 9 zone; the records are gone afterwards. A wrong TSIG secret
// fails naming the server and the key, and stores nothing.
func TestDNS01BIND(t *testing.T) {
	bind := bindtest.Start(t, "internal.test")
	p := dnsPebble(t, bind.Addr, nil)
	t.Setenv("TLSMGR_TEST_TSIG", bind.Secret)
	d := configs.ACMEDNS{Provider: configs.DNSProviderRFC2136, Server: bind.Addr, TSIGKeyName: bind.KeyName,
		TSIGAlgorithm: configs.TSIGHMACSHA256, TSIGSecretEnv: "TLSMGR_TEST_TSIG", Resolvers: []string{bind.Addr}}

	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("TLSMGR_TEST_TSIG_WRONG", "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=")
		wrong := d
		wrong.TSIGSecretEnv = "TLSMGR_TEST_TSIG_WRONG"
		storage := t.TempDir()
		m := newManager(t, dnsACMEConfig(p, wrong), storage)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := m.Manage(ctx, []string{"bad.internal.test"})
		if err == nil {
			t.Fatal("Manage succeeded with a wrong TSIG secret")
		}
		for _, part := range []string{bind.Addr, bind.KeyName, "NOTAUTH", "BADSIG"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not name %q", err, part)
			}
		}
		if got := m.Missing(); !slices.Equal(got, []string{"bad.internal.test"}) {
			t.Errorf("Missing() = %v", got)
		}
		if crts := storedCerts(t, storage); len(crts) != 0 {
			t.Errorf("a failed obtain left certificates in storage: %v", crts)
		}
	})

	m, logs := observedManager(t, dnsACMEConfig(p, d), t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := m.Manage(ctx, []string{"app.internal.test", "*.internal.test"}); err != nil {
		t.Fatalf("Manage: %v\npebble log:\n%s", err, p.log())
	}
	t.Logf("two DNS-01 certificates from pebble through BIND in %s", time.Since(start).Round(time.Millisecond))
	addr := serveTLS(t, m.ServerTLSConfig("app.internal.test", "http/1.1"))
	roots := testpki.MustPoolOf(t, p.issuingRoot(t))
	for _, name := range []string{"app.internal.test", "anything.internal.test"} {
		cs, err := handshake(t, addr, &tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		t.Logf("%s: served %v", name, cs.PeerCertificates[0].DNSNames)
	}
	if !strings.Contains(p.log(), "set VALID by completed challenge") {
		t.Errorf("pebble validated no challenge:\n%s", p.log())
	}
	for _, name := range []string{"_acme-challenge.app.internal.test.", "_acme-challenge.internal.test."} {
		if v := txtRecords(t, bind.Addr, name); len(v) != 0 {
			t.Errorf("%s still holds %q after the obtain", name, v)
		}
	}
	if logs.FilterMessage("certificate obtained").Len() != 2 {
		t.Errorf("want two certificate obtained lines")
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, bind.Secret) {
			t.Errorf("the TSIG secret appears in a log line: %s", line)
		}
	}
}

// TestDNS01Route53 obtains a wildcard certificate through the route53
// provider: the AWS SDK (pointed at the double with its own
// AWS_ENDPOINT_URL_ROUTE_53 setting, credentials from the environment)
// writes the record into the double, which serves it as DNS to pebble.
// No credential appears in any log line.
func TestDNS01Route53(t *testing.T) {
	d := r53test.Start(t)
	d.AddZone("clinic.example", false)
	dnsAddr := d.ServeDNS(t)
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": d.AccessKey, "AWS_SECRET_ACCESS_KEY": d.SecretKey, "AWS_SESSION_TOKEN": d.SessionToken,
		"AWS_ENDPOINT_URL_ROUTE_53": d.URL, "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
	} {
		t.Setenv(k, v)
	}
	p := dnsPebble(t, dnsAddr, nil)
	m, logs := observedManager(t, dnsACMEConfig(p, configs.ACMEDNS{Provider: configs.DNSProviderRoute53, Resolvers: []string{dnsAddr}}), t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Manage(ctx, []string{"*.clinic.example"}); err != nil {
		t.Fatalf("Manage: %v\ndouble violations: %v\npebble log:\n%s", err, d.Violations(), p.log())
	}
	cs, err := handshake(t, serveTLS(t, m.ServerTLSConfig("*.clinic.example")), &tls.Config{ServerName: "sql.clinic.example", RootCAs: testpki.MustPoolOf(t, p.issuingRoot(t))})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if got := cs.PeerCertificates[0].DNSNames; !slices.Equal(got, []string{"*.clinic.example"}) {
		t.Errorf("served %v", got)
	}
	if v := d.Violations(); len(v) > 0 {
		t.Errorf("the double refused requests:\n%s", strings.Join(v, "\n"))
	}
	if v := d.TXT("_acme-challenge.clinic.example"); len(v) != 0 {
		t.Errorf("challenge record left behind: %q", v)
	}
	ops := strings.Join(d.Ops(), "\n")
	for _, want := range []string{"UPSERT TXT _acme-challenge.clinic.example.", "DELETE TXT _acme-challenge.clinic.example.", "GetChange"} {
		if !strings.Contains(ops, want) {
			t.Errorf("no %q among the double's operations:\n%s", want, ops)
		}
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, d.SecretKey) || strings.Contains(line, d.SessionToken) {
			t.Errorf("a credential appears in a log line: %s", line)
		}
	}
}

// TestEABPebble: pebble requiring external account binding accepts the
// account with the right MAC key and refuses a wrong one with an error
// that says so.
func TestEABPebble(t *testing.T) {
	const kid = "kid-gateway"
	const mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	bind := bindtest.Start(t, "internal.test")
	p := dnsPebble(t, bind.Addr, map[string]string{kid: mac})
	t.Setenv("TLSMGR_TEST_EAB_TSIG", bind.Secret)
	t.Setenv("TLSMGR_TEST_EAB_RIGHT", mac)
	t.Setenv("TLSMGR_TEST_EAB_WRONG", "c29tZS1vdGhlci1tYWMta2V5LXRoYXQtcGViYmxlLWRvZXMtbm90LWtub3c")
	d := configs.ACMEDNS{Provider: configs.DNSProviderRFC2136, Server: bind.Addr, TSIGKeyName: bind.KeyName,
		TSIGSecretEnv: "TLSMGR_TEST_EAB_TSIG", Resolvers: []string{bind.Addr}}
	for _, tc := range []struct {
		env, name string
		ok        bool
	}{
		{"TLSMGR_TEST_EAB_WRONG", "wrong.internal.test", false},
		{"TLSMGR_TEST_EAB_RIGHT", "right.internal.test", true},
	} {
		cfg := dnsACMEConfig(p, d)
		cfg.ACME.EAB = configs.ACMEEAB{KeyID: kid, MACKeyEnv: tc.env}
		m := newManager(t, cfg, t.TempDir())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := m.Manage(ctx, []string{tc.name})
		cancel()
		switch {
		case tc.ok && err != nil:
			t.Errorf("with the right MAC key: %v", err)
		case !tc.ok && err == nil:
			t.Errorf("with a wrong MAC key the account was accepted")
		case !tc.ok:
			t.Logf("wrong MAC key: %v", err)
			if !strings.Contains(err.Error(), "external account binding") || !strings.Contains(err.Error(), kid) {
				t.Errorf("error %q does not say the external account binding of %s was refused", err, kid)
			}
		}
	}
}

// storedCerts lists the certificate files certmagic keeps in storage.
func storedCerts(t *testing.T, storage string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(storage, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".crt") && strings.Contains(path, "certificates") {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// txtRecords asks server for the TXT strings at name.
func txtRecords(t *testing.T, server, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	r, err := dns.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

func strconvParseBool() (bool, error) { return strconv.ParseBool(os.Getenv("CI")) }

// TestDNS01Fallback: with a DNS provider that fails (a wrong TSIG secret)
// and HTTP-01 enabled, a name pebble can reach is obtained through HTTP-01
// on the gateway's own listener, while a wildcard is not tried there and
// fails with the DNS error.
func TestDNS01Fallback(t *testing.T) {
	bind := bindtest.Start(t, "internal.test", "app A 127.0.0.1")
	bin, err := exec.LookPath("pebble")
	if err != nil {
		requireTool(t, "pebble not found: install the Debian package pebble")
	}
	httpLn := listen(t)
	p := startPebble(t, bin, portOfAddr(httpLn), testkit.MustFreePort(t), pebbleOpts{dnsServer: bind.Addr})
	t.Setenv("TLSMGR_TEST_FALLBACK_TSIG", "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=")
	cfg := dnsACMEConfig(p, configs.ACMEDNS{Provider: configs.DNSProviderRFC2136, Server: bind.Addr, TSIGKeyName: bind.KeyName,
		TSIGSecretEnv: "TLSMGR_TEST_FALLBACK_TSIG", Resolvers: []string{bind.Addr}})
	cfg.ACME.DisableHTTPChallenge = false
	m, logs := observedManager(t, cfg, t.TempDir())
	if err := m.SetChallengeAddresses(httpLn.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: m.HTTPChallengeHandler(nil)}
	go func() { _ = hs.Serve(httpLn) }() // ends with hs.Close
	t.Cleanup(func() { hs.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Manage(ctx, []string{"app.internal.test"}); err != nil {
		t.Fatalf("Manage with HTTP-01 as the fallback: %v\npebble log:\n%s", err, p.log())
	}
	if logs.FilterMessage("dns-01 failed; trying http-01 and tls-alpn-01").Len() != 1 {
		t.Errorf("the failed DNS-01 attempt was not logged")
	}
	if !strings.Contains(p.log(), "Attempting to validate w/ HTTP") {
		t.Errorf("pebble did not validate over HTTP:\n%s", p.log())
	}
	err = m.Manage(ctx, []string{"*.internal.test"})
	if err == nil || !strings.Contains(err.Error(), "NOTAUTH") || strings.Contains(err.Error(), "http-01") {
		t.Errorf("wildcard with a failing DNS provider: %v, want the DNS error alone", err)
	}
}
