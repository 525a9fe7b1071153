package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// TestOpsCertificates checks what an operator learns about certificates:
// `gateway check` gives each certificate's source and expiry (an operator
// file before the first start, a certificate in storage after it), and
// /certs and the metrics follow an operator certificate replaced on disk
// (picked up by the watcher, then by SIGHUP), a broken replacement (the
// failure is reported, the certificate kept), and the expiry of each name.
func TestOpsCertificates(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "Ops Operator CA")
	dir := t.TempDir()
	first := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second) // within the 30-day warning
	certPEM, keyPEM := ca.issueUntil(t, first, "op.test")
	certFile := writeFile(t, dir, "op.crt", certPEM)
	keyFile := writeFile(t, dir, "op.key", keyPEM)

	cfg := opsConfig(t, opsSite{"op.test", namedBackend(t, "op")}, opsSite{"internal.test", namedBackend(t, "internal")})
	cfg.TLS.Certificates = []gwCert{{CertFile: certFile, KeyFile: keyFile}}
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	writeConfigTo(t, file, cfg)

	check := func(t *testing.T) string {
		t.Helper()
		res := runCLI(t, nil, "check", "--config", file)
		if res.code != 0 {
			t.Fatalf("gateway check: %s", res)
		}
		return res.stdout
	}
	t.Run("check_before_start", func(t *testing.T) {
		out := check(t)
		wantOp := fmt.Sprintf("certificate op.test: operator certificate %s (expires %s)", certFile, first.UTC().Format(time.DateOnly))
		if !strings.Contains(out, wantOp) {
			t.Errorf("gateway check does not say %q:\n%s", wantOp, out)
		}
		if !strings.Contains(out, `certificate internal.test: will be obtained from internal CA "Gateway Local CA"`) {
			t.Errorf("gateway check does not say internal.test will be obtained:\n%s", out)
		}
	})

	g := startOpsGateway(t, cfg)
	opCert := func(r certsReport) (time.Time, string, string) {
		for _, c := range r.Certificates {
			if c.Issuer == "operator" {
				op, res := "", ""
				if c.LastRenewal != nil {
					op, res = c.LastRenewal.Operation, c.LastRenewal.Result+" "+c.LastRenewal.Error
				}
				return c.NotAfter, op, res
			}
		}
		t.Fatalf("/certs lists no operator certificate: %+v", r)
		return time.Time{}, "", ""
	}
	if na, _, _ := opCert(g.certs(t)); !na.Equal(first) {
		t.Fatalf("/certs: operator not_after %s, want %s", na, first)
	}
	m := g.scrape(t)
	if v := m.get("gateway_certificate_not_after_timestamp_seconds", "name", "op.test", "issuer", "operator"); v != float64(first.Unix()) {
		t.Errorf("gateway_certificate_not_after_timestamp_seconds{op.test} = %v, want %d", v, first.Unix())
	}
	if v := m.get("gateway_certificate_expiry_seconds", "name", "op.test", "issuer", "operator"); v < 19*24*3600 || v > 20*24*3600 {
		t.Errorf("gateway_certificate_expiry_seconds{op.test} = %v, want about 20 days", v)
	}
	// The operator certificate expires within 30 days: a warning says so.
	g.waitLog(t, 10*time.Second, "the expiry warning", func(_ string, e logEntry) bool {
		return e.str("msg") == "operator certificate expires soon" && e.str("file") == certFile
	})

	t.Run("check_after_start", func(t *testing.T) {
		out := check(t)
		if !strings.Contains(out, `certificate internal.test: internal CA "Gateway Local CA" (in storage, expires `) {
			t.Errorf("gateway check does not give the stored certificate's expiry:\n%s", out)
		}
	})

	replace := func(t *testing.T, notAfter time.Time) {
		t.Helper()
		c, k := ca.issueUntil(t, notAfter, "op.test")
		// Written aside and renamed, key first, as deployment tools do.
		writeFile(t, dir, ".op.key.new", k)
		writeFile(t, dir, ".op.crt.new", c)
		if err := os.Rename(filepath.Join(dir, ".op.key.new"), keyFile); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, ".op.crt.new"), certFile); err != nil {
			t.Fatal(err)
		}
	}
	waitNotAfter := func(t *testing.T, want time.Time) {
		t.Helper()
		testkit.Eventually(t, 60*time.Second, "/certs showing the new not_after", func() error {
			na, op, res := opCert(g.certs(t))
			if !na.Equal(want) || op != "reload" || res != "success " {
				return fmt.Errorf("not_after %s, last_renewal %s %s; want %s, reload success", na, op, res, want)
			}
			return nil
		})
	}

	t.Run("renewed_on_disk", func(t *testing.T) {
		second := time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
		replace(t, second)
		waitNotAfter(t, second) // the watcher polls the files
		v := g.scrape(t).get("gateway_certificate_operations_total", "issuer", "operator", "operation", "reload", "result", "success")
		if v < 1 {
			t.Errorf("gateway_certificate_operations_total{operator,reload,success} = %v, want at least 1", v)
		}
	})

	t.Run("broken_file_reported_and_kept", func(t *testing.T) {
		before, _, _ := opCert(g.certs(t))
		writeFile(t, dir, "op.crt", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
		testkit.Eventually(t, 60*time.Second, "/certs reporting the failed reload", func() error {
			na, op, res := opCert(g.certs(t))
			if op != "reload" || !strings.HasPrefix(res, "failure ") || !na.Equal(before) {
				return fmt.Errorf("not_after %s, last_renewal %s %q", na, op, res)
			}
			return nil
		})
		if v := g.scrape(t).get("gateway_certificate_operations_total", "issuer", "operator", "operation", "reload", "result", "failure"); v < 1 {
			t.Errorf("gateway_certificate_operations_total{operator,reload,failure} = %v", v)
		}
	})

	t.Run("renewed_then_sighup", func(t *testing.T) {
		third := time.Now().Add(120 * 24 * time.Hour).Truncate(time.Second)
		replace(t, third)
		res := g.reload(t, cfg)
		if res.str("msg") != "config reloaded" {
			t.Fatalf("reload: %v", res)
		}
		waitNotAfter(t, third)
	})
}
