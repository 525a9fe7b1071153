//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
)

// certFiles is the one server certificate every proxy under test serves
// (ECDSA P-256, for "localhost" and 127.0.0.1), so that the TLS work per
// handshake is identical for all of them.
type certFiles struct {
	root     string // PEM of the throwaway CA, for clients that verify
	cert     string // PEM leaf then CA (nginx ssl_certificate, caddy, gateway)
	key      string // PEM PKCS#8 key
	combined string // cert then key, for haproxy's crt
}

// writeCerts makes a throwaway CA and a leaf signed by it in dir.
func writeCerts(dir string) (certFiles, error) {
	o := testpki.Options{NotAfter: time.Now().Add(7 * 24 * time.Hour)}
	ca, err := testpki.NewCA("gateway bench CA", o)
	if err != nil {
		return certFiles{}, err
	}
	leaf, err := ca.Issue(o, "localhost", "127.0.0.1")
	if err != nil {
		return certFiles{}, err
	}
	chainPEM := leaf.ChainPEM()
	f := certFiles{
		root:     filepath.Join(dir, "root.pem"),
		cert:     filepath.Join(dir, "cert.pem"),
		key:      filepath.Join(dir, "key.pem"),
		combined: filepath.Join(dir, "combined.pem"),
	}
	for path, data := range map[string][]byte{
		f.root:     ca.PEM,
		f.cert:     chainPEM,
		f.key:      leaf.KeyPEM,
		f.combined: append(append([]byte{}, chainPEM...), leaf.KeyPEM...),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return certFiles{}, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return f, nil
}
