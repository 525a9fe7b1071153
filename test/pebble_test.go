package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
)

// acmeName is the name the gateway obtains a certificate for from pebble;
// pebble-challtestsrv resolves it (and every other name) to 127.0.0.1.
const acmeName = "acme.test"

// TestACMEPebble obtains a certificate from pebble, Let's Encrypt's test
// ACME server, which really validates the challenge against the gateway's
// listeners: once with HTTP-01 only and once with TLS-ALPN-01 only.
func TestACMEPebble(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found: install the Debian package pebble", bin)
		}
	}
	backend := newEchoBackend(t, nil)
	cases := []struct {
		name                        string
		disableHTTP, disableTLSALPN bool
	}{
		{name: "http-01", disableTLSALPN: true},
		{name: "tls-alpn-01", disableHTTP: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// pebble must know the gateway's ports before either starts:
			// it validates HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort.
			httpPort, tlsPort := testkit.MustFreePort(t), testkit.MustFreePort(t)
			pb := startPebble(t, httpPort, tlsPort)

			cfg := newConfig(t, backend.URL, acmeName)
			cfg.TLS.Issuer = "acme"
			cfg.TLS.ACME = &gwACME{
				CA:                      pb.directory,
				CARoot:                  pb.listenerCertFile,
				DisableHTTPChallenge:    tc.disableHTTP,
				DisableTLSALPNChallenge: tc.disableTLSALPN,
			}
			cfg.HTTP.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
			cfg.HTTP.RedirectListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
			g := startGateway(t, cfg.write(t))

			roots := testpki.MustPoolOf(t, pb.issuingRoot(t))
			state, err := handshake(g.httpsAddr, acmeName, roots)
			if err != nil {
				t.Fatalf("the gateway's certificate for %s does not verify against pebble's root: %v", acmeName, err)
			}
			leaf := state.PeerCertificates[0]
			t.Logf("served %s issued by %q", leaf.Subject, leaf.Issuer)
			// pebble logs the HTTP-01 fetches it makes; TLS-ALPN-01 leaves no
			// such line. Either way the authorization was validated for real.
			pebbleLog := pb.proc.stdout.String()
			if !strings.Contains(pebbleLog, "set VALID by completed challenge") {
				t.Errorf("pebble did not log a validated challenge:\n%s", pebbleLog)
			}
			if httpTried := strings.Contains(pebbleLog, "Attempting to validate w/ HTTP"); httpTried != !tc.disableHTTP {
				t.Errorf("pebble tried HTTP-01: %v, want %v", httpTried, !tc.disableHTTP)
			}
			_, got := getEcho(t, httpsClient(roots, acmeName, g.httpsAddr), httpsURL(acmeName, g.httpsAddr, "/acme"), acmeName)
			if got.Path != "/acme" || got.ForwardedProto != "https" {
				t.Errorf("backend saw %+v", got)
			}
			g.stop(t)
		})
	}
}

// pebbleServer is a running pebble with its own pebble-challtestsrv for DNS.
type pebbleServer struct {
	proc             *proc
	directory        string // ACME directory URL
	mgmt             string // management address (roots, intermediates)
	listenerCertFile string // PEM of the certificate pebble serves its API with
	listenerRoots    *x509.CertPool
}

func startPebble(t *testing.T, httpPort, tlsPort int) *pebbleServer {
	t.Helper()

	dnsPort := freeUDPAndTCPPort(t)
	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	startProc(t, procSpec{name: "pebble-challtestsrv", bin: "pebble-challtestsrv", args: []string{
		"-dns01", dnsAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.MustFreePort(t))),
		"-defaultIPv4", "127.0.0.1",
		"-defaultIPv6", "",
	}})
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr)
	}}
	testkit.Eventually(t, 15*time.Second, "pebble-challtestsrv resolving "+acmeName, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		addrs, err := resolver.LookupHost(ctx, acmeName)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0] != "127.0.0.1" {
			return fmt.Errorf("%s resolves to %v, want only 127.0.0.1", acmeName, addrs)
		}
		return nil
	})

	return launchPebble(t, httpPort, tlsPort, dnsAddr)
}

// launchPebble runs pebble resolving every name through the DNS server at
// dnsAddr (-dnsserver), with challenge validation for real. With eabKeys
// (key ID -> base64url MAC key) it requires external account binding.
func launchPebble(t *testing.T, httpPort, tlsPort int, dnsAddr string, eabKeys ...map[string]string) *pebbleServer {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedServer(t, "127.0.0.1", "localhost")
	pb := &pebbleServer{
		listenerCertFile: writeFile(t, dir, "pebble.crt", certPEM),
		listenerRoots:    testpki.MustPoolOf(t, certPEM),
	}
	keyFile := writeFile(t, dir, "pebble.key", keyPEM)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.MustFreePort(t)))
	pb.mgmt = net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.MustFreePort(t)))
	pb.directory = "https://" + listen + "/dir"
	settings := map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        pb.mgmt,
		"certificate":                    pb.listenerCertFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": len(eabKeys) > 0,
	}
	if len(eabKeys) > 0 {
		settings["externalAccountMACKeys"] = eabKeys[0]
	}
	conf, err := json.MarshalIndent(map[string]any{"pebble": settings}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	confFile := writeFile(t, dir, "pebble-config.json", conf)
	pb.proc = startProc(t, procSpec{
		name: "pebble",
		bin:  "pebble",
		args: []string{"-config", confFile, "-dnsserver", dnsAddr},
		// No PEBBLE_VA_ALWAYS_VALID: pebble must really validate the challenge.
		env: []string{"PEBBLE_VA_ALWAYS_VALID=0", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0"},
		dir: dir,
	})
	testkit.Eventually(t, 30*time.Second, "pebble serving its directory", func() error {
		_, err := pb.get(pb.directory)
		return err
	})
	return pb
}

// issuingRoot is pebble's root certificate, which changes at every start.
func (pb *pebbleServer) issuingRoot(t *testing.T) []byte {
	t.Helper()
	root, err := pb.get("https://" + pb.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	return root
}

// get fetches url from pebble, trusting pebble's listener certificate.
func (pb *pebbleServer) get(url string) ([]byte, error) {
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pb.listenerRoots}},
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// freeUDPAndTCPPort is a 127.0.0.1 port free for both UDP and TCP a moment
// ago: a DNS server listens on both.
func freeUDPAndTCPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}
