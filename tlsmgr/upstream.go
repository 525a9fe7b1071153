package tlsmgr

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/gateway-project/gateway/configs"
)

// UpstreamCertificate is a server certificate the internal CA issued for an
// upstream server (SQL Server, IIS), so that the gateway can verify it with
// the internal root as ca_file instead of a pin or insecure_skip_verify.
type UpstreamCertificate struct {
	Leaf         *x509.Certificate
	Intermediate *x509.Certificate
	Root         *x509.Certificate
	Key          *rsa.PrivateKey
}

// upstreamKeyBits: RSA, not the ECDSA the gateway uses for itself. SQL
// Server loads only RSA certificates for TLS, and SChannel on Windows
// Server 2016 negotiates ECDSA certificates only with some clients.
const upstreamKeyBits = 2048

// IssueUpstream issues a certificate for names (DNS names or IP addresses)
// valid for lifetime, from the internal CA in storage, which is created
// first when it does not exist: the same CA, storage layout and lock a
// running gateway uses. A leaf never outlives the intermediate that signs
// it, so NotAfter may come sooner than lifetime (the intermediate is
// replaced when a third of its year is left). Issuing is recorded in
// storage for UpstreamCertificatesIn.
func (m *Manager) IssueUpstream(ctx context.Context, names []string, lifetime time.Duration) (*UpstreamCertificate, error) {
	names = normalizeNames(names)
	if len(names) == 0 {
		return nil, errors.New("name at least one DNS name or IP address")
	}
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if !certmagic.SubjectQualifiesForCert(n) {
			return nil, fmt.Errorf("%q is not a valid certificate name", n)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	key, err := rsa.GenerateKey(rand.Reader, upstreamKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generating RSA key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate request: %w", err)
	}
	_, leaf, err := m.ca.issue(ctx, csr, lifetime)
	if err != nil {
		return nil, err
	}
	root, inter, err := m.ca.load(ctx)
	if err != nil {
		return nil, err
	}
	if leaf.CheckSignatureFrom(inter.cert) != nil {
		// The intermediate was replaced between the two calls; rare, and
		// the caller can simply run again.
		return nil, errors.New("internal CA intermediate changed while issuing; issue again")
	}
	c := &UpstreamCertificate{Leaf: leaf, Intermediate: inter.cert, Root: root.cert, Key: key}
	m.log.Info("upstream certificate issued", zap.Strings("names", names), zap.String("serial", leaf.SerialNumber.Text(16)),
		zap.Time("not_after", leaf.NotAfter), zap.String("sha256", c.SHA256()))
	return c, nil
}

// SHA256 is the hex SHA-256 of the leaf's DER: the value of pin_sha256.
func (c *UpstreamCertificate) SHA256() string {
	sum := sha256.Sum256(c.Leaf.Raw)
	return hex.EncodeToString(sum[:])
}

// RootPEM is the internal root, the ca_file that verifies the upstream.
func (c *UpstreamCertificate) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
}

// PFX encodes the key, the leaf and its chain (intermediate, root) as
// PKCS#12 protected by password, which must not be empty: the file holds
// the private key.
//
// The default encoding is 3DES with a SHA-1 MAC (go-pkcs12 LegacyDES, what
// `openssl pkcs12 -export -descert` writes and Windows exports as
// "TripleDES-SHA1"): Windows Server 2016, and the SQL Server Configuration
// Manager and IIS running on it, cannot import the AES-256 PBES2 files
// Windows Server 2019 introduced. With aes, the file is AES-256-CBC with
// PBKDF2 and an HMAC-SHA-256 MAC (Modern2023), for Windows Server 2019 and
// later, OpenSSL 1.1.1+ and Java 12+. The password is what protects the key
// either way; 3DES is old, not broken for this use.
func (c *UpstreamCertificate) PFX(password string, aes bool) ([]byte, error) {
	if password == "" {
		return nil, errors.New("refusing to write a PFX without a password: it holds the private key")
	}
	enc := pkcs12.LegacyDES
	if aes {
		enc = pkcs12.Modern2023
	}
	return enc.Encode(c.Key, c.Leaf, []*x509.Certificate{c.Intermediate, c.Root}, password)
}

// UpstreamRecord notes one upstream certificate the internal CA issued;
// `gateway check` reads them to warn before they expire.
type UpstreamRecord struct {
	Names    []string  `json:"names"`
	Serial   string    `json:"serial"`
	SHA256   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after"`
	IssuedAt time.Time `json:"issued_at"`
	File     string    `json:"file"` // where the PFX was written
}

// upstreamRecordDir is where records are kept, under the CA's prefix.
const upstreamRecordDir = "issued"

// RecordUpstream stores a record of c, written to file, in storage.
func (m *Manager) RecordUpstream(ctx context.Context, c *UpstreamCertificate, file string) error {
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	rec := UpstreamRecord{
		Names:    certNames(c.Leaf),
		Serial:   c.Leaf.SerialNumber.Text(16),
		SHA256:   c.SHA256(),
		NotAfter: c.Leaf.NotAfter.UTC(),
		IssuedAt: m.now().UTC(),
		File:     file,
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	key := m.ca.prefix + "/" + upstreamRecordDir + "/" + rec.Serial + ".json"
	if err := m.storage.Store(ctx, key, data); err != nil {
		return fmt.Errorf("recording upstream certificate in storage: %w", err)
	}
	return nil
}

// UpstreamCertificatesIn reads, without writing or locking anything, the
// records of the upstream certificates the internal CA named in cfg issued
// into storageDir: for each set of names the most recently issued one,
// sorted by expiry. A missing directory is no records.
func UpstreamCertificatesIn(cfg configs.TLS, storageDir string) ([]UpstreamRecord, error) {
	prefix := (&internalCA{name: cfg.Internal.CAName}).storagePrefix()
	dir := filepath.Join(storageDir, filepath.FromSlash(prefix), upstreamRecordDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	latest := map[string]UpstreamRecord{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r UpstreamRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
		k := strings.Join(slices.Sorted(slices.Values(r.Names)), ",")
		if prev, ok := latest[k]; !ok || r.IssuedAt.After(prev.IssuedAt) {
			latest[k] = r
		}
	}
	out := make([]UpstreamRecord, 0, len(latest))
	for _, r := range latest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b UpstreamRecord) int { return a.NotAfter.Compare(b.NotAfter) })
	return out, nil
}
