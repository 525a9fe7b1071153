package test

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sslscanReport is the part of sslscan 2's --xml output the posture test reads.
type sslscanReport struct {
	Tests []struct {
		Protocols []struct {
			Type    string `xml:"type,attr"`
			Version string `xml:"version,attr"`
			Enabled string `xml:"enabled,attr"`
		} `xml:"protocol"`
		Ciphers []struct {
			Status     string `xml:"status,attr"`
			SSLVersion string `xml:"sslversion,attr"`
			Cipher     string `xml:"cipher,attr"`
		} `xml:"cipher"`
	} `xml:"ssltest"`
}

// TestTLSPosture scans the HTTPS listener with sslscan: no SSL, no TLS 1.0 or
// 1.1 (nor 1.2 with min_version 1.3), and only ECDHE with AEAD ciphers.
func TestTLSPosture(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sslscan"); err != nil {
		t.Skip("sslscan not found: install the Debian package sslscan")
	}
	backend := newEchoBackend(t, nil)
	cases := []struct {
		minVersion string
		enabled    map[string]bool // protocol "type version" -> enabled
	}{
		{"1.2", map[string]bool{"ssl 2": false, "ssl 3": false, "tls 1.0": false, "tls 1.1": false, "tls 1.2": true, "tls 1.3": true}},
		{"1.3", map[string]bool{"ssl 2": false, "ssl 3": false, "tls 1.0": false, "tls 1.1": false, "tls 1.2": false, "tls 1.3": true}},
	}
	for _, tc := range cases {
		t.Run("min_version_"+tc.minVersion, func(t *testing.T) {
			t.Parallel()
			cfg := newConfig(t, backend.URL, "app.test")
			cfg.TLS.MinVersion = tc.minVersion
			g := startGateway(t, cfg.write(t))

			out := filepath.Join(t.TempDir(), "sslscan.xml")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sslscan", "--no-colour", "--sni-name=app.test", "--xml="+out, g.httpsAddr)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sslscan: %v\n%s", err, b)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var rep sslscanReport
			if err := xml.Unmarshal(data, &rep); err != nil || len(rep.Tests) != 1 {
				t.Fatalf("sslscan XML (%v):\n%s", err, data)
			}
			scan := rep.Tests[0]
			seen := map[string]bool{}
			for _, p := range scan.Protocols {
				name := p.Type + " " + p.Version
				seen[name] = true
				if want, ok := tc.enabled[name]; ok && (p.Enabled == "1") != want {
					t.Errorf("%s enabled=%s, want %v", strings.ToUpper(name), p.Enabled, want)
				}
			}
			for name := range tc.enabled {
				if !seen[name] {
					t.Errorf("sslscan did not report %s:\n%s", name, data)
				}
			}
			accepted := 0
			for _, c := range scan.Ciphers {
				if c.Status != "accepted" && c.Status != "preferred" {
					continue
				}
				accepted++
				if !strongSuite(c.SSLVersion, c.Cipher) {
					t.Errorf("%s accepts %s: want only ECDHE with AES-GCM or ChaCha20-Poly1305", c.SSLVersion, c.Cipher)
				}
			}
			if accepted == 0 {
				t.Fatalf("sslscan found no accepted cipher suite: the scan did not reach the gateway?\n%s", data)
			}
		})
	}
}

// strongSuite reports whether an OpenSSL-named suite is forward secret and
// AEAD: every TLS 1.3 suite, and ECDHE with GCM or ChaCha20 in TLS 1.2.
func strongSuite(version, cipher string) bool {
	aead := strings.Contains(cipher, "GCM") || strings.Contains(cipher, "CHACHA20")
	if version == "TLSv1.3" {
		return aead
	}
	return version == "TLSv1.2" && strings.HasPrefix(cipher, "ECDHE-") && aead
}
