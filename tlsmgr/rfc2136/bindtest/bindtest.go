package bindtest

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running named.
type Server struct {
	Addr      string // 127.0.0.1:port, UDP and TCP
	Zone      string // e.g. "internal.test", without a trailing dot
	KeyName   string // the TSIG key granted TXT updates and transfers
	Algorithm string // hmac-sha256
	Secret    string // the key's base64 secret

	mu  sync.Mutex
	log []string
}

// Log returns what named has written to its standard error so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

// Start runs named with one primary zone and returns once it answers.
// records are zone-file lines added after the SOA and NS records, relative
// to the zone (e.g. "app A 127.0.0.1").
func Start(t testing.TB, zone string, records ...string) *Server {
	t.Helper()
	named := lookNamed(t)
	dir := t.TempDir()
	s := &Server{Zone: zone, KeyName: "gw-key", Algorithm: "hmac-sha256", Secret: newSecret(t)}

	zoneFile := filepath.Join(dir, zone+".zone")
	body := fmt.Sprintf("$TTL 60\n@ IN SOA ns.%[1]s. hostmaster.%[1]s. 1 3600 600 86400 1\n@ IN NS ns.%[1]s.\nns IN A 127.0.0.1\n%[2]s\n",
		zone, strings.Join(records, "\n"))
	write(t, zoneFile, body)

	port := freeUDPAndTCPPort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key "%[3]s" { algorithm %[4]s; secret "%[5]s"; };
zone "%[6]s" {
	type primary;
	file "%[7]s";
	update-policy { grant %[3]s zonesub TXT; };
	allow-transfer { key %[3]s; };
};
`, dir, port, s.KeyName, s.Algorithm, s.Secret, zone, zoneFile)
	confFile := filepath.Join(dir, "named.conf")
	write(t, confFile, conf)

	cmd := exec.Command(named, "-c", confFile, "-g", "-u", "root")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting named: %v", err)
	}
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log = append(s.log, line)
			s.mu.Unlock()
			// named -g prints "running" once every listener and zone is loaded.
			if !signalled && strings.HasSuffix(line, "running") {
				signalled = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- named log:\n%s", s.Log())
		}
	})
	select {
	case <-ready:
	case <-done:
		t.Fatalf("named exited before serving:\n%s", s.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("named not running after 30s:\n%s", s.Log())
	}
	return s
}

// lookNamed returns named's path, or skips the test (fails it when CI is
// true: CI installs bind9, so a skip there would hide a missing step).
func lookNamed(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"named", "/usr/sbin/named"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("named not found: install the Debian package bind9 (CI is set: real servers are required)")
	}
	t.Skip("named not found: install the Debian package bind9")
	return ""
}

func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func write(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeUDPAndTCPPort is a 127.0.0.1 port free for both UDP and TCP a moment
// ago: named listens on both.
func freeUDPAndTCPPort(t testing.TB) int {
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
