package tlsmgr

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Lifetimes of the internal CA's certificates.
const (
	rootLifetime         = 10 * 365 * 24 * time.Hour
	intermediateLifetime = 365 * 24 * time.Hour
	// rootExpiryWarning is how long before the root expires an error is
	// logged at every load: clients must install the next root in time.
	rootExpiryWarning = 365 * 24 * time.Hour
	// backdate absorbs clock skew between the gateway and its clients.
	backdate = time.Minute
)

// internalCA is the gateway's own certificate authority, plugged into
// certmagic as an Issuer.
//
// A root (ECDSA P-256, 10 years) signs an intermediate (ECDSA P-256, 1 year)
// that signs the leaves. Both live in certmagic storage under
// internal_ca/<ca name>/, so every restart, and every gateway sharing the
// storage, issues under the same root: the one operators install in client
// trust stores (`gateway ca root`).
//
// The intermediate is replaced once less than a third of its life is left
// (about four months before it expires); leaves issued before that carry their
// own intermediate in their stored chain and stay valid. A leaf never outlives
// its intermediate: its NotAfter is clamped to the intermediate's. The root is
// never replaced automatically, since clients would stop trusting the gateway;
// an error is logged during its last year.
type internalCA struct {
	storage  certmagic.Storage
	name     string        // tls.internal.ca_name
	prefix   string        // storage key prefix
	lifetime time.Duration // leaf lifetime
	log      *zap.Logger
	now      func() time.Time

	mu    sync.Mutex // guards root and inter, and serializes loading
	root  *caPair
	inter *caPair
}

// caPair is a CA certificate with its key.
type caPair struct {
	cert *x509.Certificate
	pem  []byte
	key  crypto.Signer
}

var _ certmagic.Issuer = (*internalCA)(nil)

func newInternalCA(storage certmagic.Storage, name string, leafLifetime time.Duration, log *zap.Logger) *internalCA {
	return &internalCA{
		storage:  storage,
		name:     name,
		prefix:   (&internalCA{name: name}).storagePrefix(),
		lifetime: leafLifetime,
		log:      log,
		now:      time.Now,
	}
}

// storagePrefix is the storage key prefix of the CA's root, intermediate
// and records.
func (ca *internalCA) storagePrefix() string {
	return "internal_ca/" + certmagic.StorageKeys.Safe(ca.name)
}

// IssuerKey names the directory certmagic stores this CA's leaves under.
func (ca *internalCA) IssuerKey() string {
	return "internal-" + certmagic.StorageKeys.Safe(ca.name)
}

// Issue signs a leaf for the CSR's DNS names and IP addresses with the
// current intermediate and returns the leaf followed by the intermediate.
func (ca *internalCA) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	chain, _, err := ca.issue(ctx, csr, ca.lifetime)
	if err != nil {
		return nil, err
	}
	return &certmagic.IssuedCertificate{Certificate: chain}, nil
}

// issue signs a leaf valid for lifetime (clamped to the intermediate's
// NotAfter) and returns the PEM chain, leaf then intermediate, and the
// leaf.
func (ca *internalCA) issue(ctx context.Context, csr *x509.CertificateRequest, lifetime time.Duration) ([]byte, *x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("internal CA %q: checking CSR signature: %w", ca.name, err)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) == 0 {
		return nil, nil, fmt.Errorf("internal CA %q: CSR names no DNS name or IP address", ca.name)
	}
	_, inter, err := ca.load(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := ca.now()
	notAfter := now.Add(lifetime)
	if notAfter.After(inter.cert.NotAfter) {
		notAfter = inter.cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	// Older SQL Server client drivers match the server name against the
	// common name, so the first name is repeated there (64 bytes at most,
	// RFC 5280 appendix A.1 ub-common-name).
	if cn := firstName(csr); len(cn) <= 64 {
		tmpl.Subject.CommonName = cn
	}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter.cert, csr.PublicKey, inter.key)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA %q: signing certificate for %s: %w", ca.name, firstName(csr), err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("internal CA %q: parsing certificate for %s: %w", ca.name, firstName(csr), err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, inter.pem...)
	return chain, leaf, nil
}

func firstName(csr *x509.CertificateRequest) string {
	if len(csr.DNSNames) > 0 {
		return csr.DNSNames[0]
	}
	if len(csr.IPAddresses) > 0 {
		return csr.IPAddresses[0].String()
	}
	return ""
}

// rootPEM returns the root certificate, creating the CA if storage has none.
func (ca *internalCA) rootPEM(ctx context.Context) ([]byte, error) {
	root, _, err := ca.load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), root.pem...), nil
}

// load returns the root and a current intermediate: from memory, else from
// storage, else created (or the intermediate replaced) under the storage
// lock so that processes sharing the storage agree on one root.
func (ca *internalCA) load(ctx context.Context) (root, inter *caPair, err error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	now := ca.now()
	if ca.root != nil && ca.inter != nil && !intermediateStale(ca.inter, ca.root, now) {
		return ca.root, ca.inter, nil
	}
	root, inter, err = ca.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	if root == nil || inter == nil || intermediateStale(inter, root, now) {
		root, inter, err = ca.createLocked(ctx, now)
		if err != nil {
			return nil, nil, err
		}
	}
	if left := root.cert.NotAfter.Sub(now); left < rootExpiryWarning {
		ca.log.Error("internal ca root expires soon; distribute a new root to clients",
			zap.String("ca_name", ca.name), zap.Time("not_after", root.cert.NotAfter))
	}
	ca.root, ca.inter = root, inter
	return root, inter, nil
}

// createLocked takes the storage lock, re-reads storage (another process may
// have finished the work while this one waited) and creates what is missing.
func (ca *internalCA) createLocked(ctx context.Context, now time.Time) (root, inter *caPair, err error) {
	lock := "internal_ca_" + certmagic.StorageKeys.Safe(ca.name)
	if err := ca.storage.Lock(ctx, lock); err != nil {
		return nil, nil, fmt.Errorf("internal CA %q: locking storage: %w", ca.name, err)
	}
	defer func() {
		if err := ca.storage.Unlock(context.WithoutCancel(ctx), lock); err != nil {
			ca.log.Error("unlocking internal ca storage", zap.String("ca_name", ca.name), zap.Error(err))
		}
	}()
	root, inter, err = ca.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	if root == nil {
		root, err = ca.create(ctx, "root", nil, now)
		if err != nil {
			return nil, nil, err
		}
		ca.log.Info("internal ca root created", zap.String("ca_name", ca.name),
			zap.String("storage_key", ca.prefix+"/root.crt"), zap.Time("not_after", root.cert.NotAfter))
		inter = nil
	}
	if inter == nil || intermediateStale(inter, root, now) {
		inter, err = ca.create(ctx, "intermediate", root, now)
		if err != nil {
			return nil, nil, err
		}
		ca.log.Info("internal ca intermediate created", zap.String("ca_name", ca.name),
			zap.Time("not_after", inter.cert.NotAfter))
	}
	return root, inter, nil
}

// intermediateStale reports whether inter must be replaced: less than a third
// of its lifetime left, or not signed by root (the root was replaced).
func intermediateStale(inter, root *caPair, now time.Time) bool {
	total := inter.cert.NotAfter.Sub(inter.cert.NotBefore)
	if inter.cert.NotAfter.Sub(now) < total/3 {
		return true
	}
	return inter.cert.CheckSignatureFrom(root.cert) != nil
}

// read loads the root and intermediate from storage; nil (with a nil error)
// for what is absent. A root whose key is missing or does not match is an
// error: replacing it silently would break every client that trusts it. A
// damaged intermediate is treated as absent and replaced.
func (ca *internalCA) read(ctx context.Context) (root, inter *caPair, err error) {
	root, err = ca.readPair(ctx, "root")
	if err != nil {
		return nil, nil, err
	}
	if root == nil {
		return nil, nil, nil
	}
	inter, err = ca.readPair(ctx, "intermediate")
	if err != nil {
		ca.log.Warn("internal ca intermediate unreadable; replacing it", zap.String("ca_name", ca.name), zap.Error(err))
		inter = nil
	}
	return root, inter, nil
}

// readPair loads name.crt and name.key. The certificate is written after the
// key, so its presence means the pair is complete; a key that does not match
// means another process is replacing the pair (or the files were damaged).
func (ca *internalCA) readPair(ctx context.Context, name string) (*caPair, error) {
	certKey, keyKey := ca.prefix+"/"+name+".crt", ca.prefix+"/"+name+".key"
	certPEM, err := ca.storage.Load(ctx, certKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: loading %s: %w", ca.name, certKey, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("internal CA %q: %s: no PEM certificate", ca.name, certKey)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: parsing %s: %w", ca.name, certKey, err)
	}
	keyPEM, err := ca.storage.Load(ctx, keyKey)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: loading %s: %w", ca.name, keyKey, err)
	}
	key, err := parsePEMKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: %s: %w", ca.name, keyKey, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("internal CA %q: %s does not match %s", ca.name, keyKey, certKey)
	}
	return &caPair{cert: cert, pem: pem.EncodeToMemory(block), key: key}, nil
}

// create makes a CA certificate: self-signed when parent is nil (the root),
// else an intermediate signed by parent. It stores the key, then the
// certificate.
func (ca *internalCA) create(ctx context.Context, name string, parent *caPair, now time.Time) (*caPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: generating %s key: %w", ca.name, name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-backdate),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent == nil {
		tmpl.Subject = pkix.Name{CommonName: ca.name + " Root", Organization: []string{ca.name}}
		tmpl.NotAfter = now.Add(rootLifetime)
		tmpl.MaxPathLen = 1
	} else {
		tmpl.Subject = pkix.Name{CommonName: ca.name + " Intermediate", Organization: []string{ca.name}}
		tmpl.NotAfter = now.Add(intermediateLifetime)
		if tmpl.NotAfter.After(parent.cert.NotAfter) {
			tmpl.NotAfter = parent.cert.NotAfter
		}
		tmpl.MaxPathLenZero = true
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: signing %s: %w", ca.name, name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: parsing new %s: %w", ca.name, name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("internal CA %q: encoding %s key: %w", ca.name, name, err)
	}
	pair := &caPair{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := ca.storage.Store(ctx, ca.prefix+"/"+name+".key", keyPEM); err != nil {
		return nil, fmt.Errorf("internal CA %q: storing %s key: %w", ca.name, name, err)
	}
	if err := ca.storage.Store(ctx, ca.prefix+"/"+name+".crt", pair.pem); err != nil {
		return nil, fmt.Errorf("internal CA %q: storing %s certificate: %w", ca.name, name, err)
	}
	return pair, nil
}

// randomSerial returns a positive 128-bit serial number (RFC 5280 4.1.2.2
// allows up to 20 octets; CA/B Forum wants at least 64 random bits).
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
