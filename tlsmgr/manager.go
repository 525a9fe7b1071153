package tlsmgr

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// Defaults of the watcher in Run.
const (
	defaultPollInterval   = 5 * time.Second
	defaultExpiryInterval = 24 * time.Hour
	// expiryWarning is how long before an operator certificate expires Run
	// starts warning about it.
	expiryWarning = 30 * 24 * time.Hour
)

// Manager serves the gateway's certificates: operator certificates from
// tls.certificates first, then certificates certmagic obtains and renews
// from the configured issuer. Its methods are safe for concurrent use.
type Manager struct {
	cfg     configs.TLS
	log     *zap.Logger
	storage certmagic.Storage
	ca      *internalCA // always set, so RootPEM works whatever the issuer

	// certmagic; all nil for issuer none, acme nil unless issuer acme.
	cache *certmagic.Cache
	magic *certmagic.Config
	acme  *certmagic.ACMEIssuer

	ops      atomic.Pointer[operatorSet]
	reloadMu sync.Mutex // serializes reloads
	failures []string   // per tls.certificates entry: the last failed reload, so it is logged once

	mu     sync.Mutex
	names  []string        // every name given to Manage, in order
	issued map[string]bool // names handed to certmagic

	pollInterval   time.Duration // Run: how often operator files are checked
	expiryInterval time.Duration // Run: how often expiry is reported
	now            func() time.Time
	closeOnce      sync.Once

	metrics *Metrics
	// events holds the last obtain/renew outcome per managed name and the
	// last reload outcome per operator file (key "file:" + path); guarded
	// by mu.
	events map[string]CertEvent
}

// CertInfo describes one certificate the Manager serves.
type CertInfo struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"` // "operator" | "internal" | "acme"
	Source    string    `json:"source"` // operator: the file; acme: the CA URL; internal: the CA name
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// SHA256 is the hex SHA-256 of the leaf's DER, the value another
	// gateway's upstream pin_sha256 takes.
	SHA256 string `json:"sha256"`
	// LastRenewal is the outcome of the last obtain or renewal (issuer
	// certificates) or reload (operator files) since the process started;
	// nil when there has been none (a certificate loaded from storage or
	// read at start).
	LastRenewal *CertEvent `json:"last_renewal,omitempty"`
}

// IssuerOperator is CertInfo.Issuer and NameSource.Issuer for certificates
// from tls.certificates.
const IssuerOperator = "operator"

// New builds a manager from the tls config; storageDir is certmagic's file
// storage directory (configs.Config.Storage). Operator certificates are
// loaded now (an unreadable one is an error naming its key and file);
// nothing is obtained until Manage. Close releases what New started.
func New(cfg configs.TLS, storageDir string, logger *zap.Logger, opts ...Option) (*Manager, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if strings.TrimSpace(storageDir) == "" {
		return nil, errors.New("storage: directory is empty")
	}
	m := &Manager{
		cfg:            cfg,
		log:            logger.Named("tlsmgr"),
		storage:        &certmagic.FileStorage{Path: storageDir},
		issued:         map[string]bool{},
		failures:       make([]string, len(cfg.Certificates)),
		pollInterval:   defaultPollInterval,
		expiryInterval: defaultExpiryInterval,
		now:            time.Now,
		events:         map[string]CertEvent{},
	}
	for _, opt := range opts {
		if opt != nil {
			opt(m)
		}
	}
	m.ca = newInternalCA(m.storage, cfg.Internal.CAName, cfg.Internal.LeafLifetime, m.log.Named("internal_ca"))

	certs := make([]*operatorCert, 0, len(cfg.Certificates))
	for i, f := range cfg.Certificates {
		c, err := loadOperatorCert(i, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certKey(i, f), err)
		}
		certs = append(certs, c)
	}
	m.ops.Store(newOperatorSet(certs))

	switch cfg.Issuer {
	case configs.IssuerInternal:
		if strings.TrimSpace(cfg.Internal.CAName) == "" {
			return nil, errors.New("tls.internal.ca_name: must not be empty")
		}
		if cfg.Internal.LeafLifetime <= 0 {
			return nil, fmt.Errorf("tls.internal.leaf_lifetime: must be positive, got %s", cfg.Internal.LeafLifetime)
		}
		m.magic = m.startCertmagic(true)
		m.magic.Issuers = []certmagic.Issuer{m.ca}
	case configs.IssuerACME:
		if err := m.setupACME(); err != nil {
			return nil, err
		}
	case configs.IssuerNone:
	default:
		return nil, fmt.Errorf("tls.issuer: %q is not one of internal | acme | none", cfg.Issuer)
	}

	for _, c := range certs {
		m.logLoaded(c, "operator certificate loaded")
	}
	if m.metrics != nil {
		m.metrics.mgr.Store(m)
	}
	return m, nil
}

// Manage makes certificates available for names (site hosts and SQL host
// names; IP literals and "localhost" too for the internal issuer). Names an
// operator certificate covers use it; the others are loaded from storage or
// obtained from the issuer now (certmagic ManageSync), then renewed in the
// background. With issuer none, a name no operator certificate covers is an
// error naming it. Calling Manage again adds names.
func (m *Manager) Manage(ctx context.Context, names []string) error {
	names = normalizeNames(names)
	for _, n := range names {
		if !certmagic.SubjectQualifiesForCert(n) {
			return fmt.Errorf("%q is not a valid certificate name", n)
		}
	}
	ops := m.ops.Load()
	var pending []string
	m.mu.Lock()
	for _, n := range names {
		if !slices.Contains(m.names, n) {
			m.names = append(m.names, n)
		}
		if ops.lookup(n) == nil && !m.issued[n] {
			pending = append(pending, n)
		}
	}
	m.mu.Unlock()

	if len(pending) > 0 {
		if m.magic == nil {
			return fmt.Errorf("no operator certificate covers %s and tls.issuer is none: add a certificate for it to tls.certificates", strings.Join(pending, ", "))
		}
		if err := m.magic.ManageSync(ctx, pending); err != nil {
			return fmt.Errorf("managing certificates: %w", explainACME(m.cfg.ACME, err))
		}
		if m.cfg.Issuer == configs.IssuerInternal {
			if err := m.reissueForeign(ctx, pending); err != nil {
				return err
			}
		}
		m.mu.Lock()
		for _, n := range pending {
			m.issued[n] = true
		}
		m.mu.Unlock()
	}
	for _, n := range names {
		m.logSource(n)
	}
	return nil
}

// reissueForeign replaces internal certificates loaded from storage that do
// not chain to the current root: after an operator deleted the CA from
// storage but not the leaves, clients that trust the new root would
// otherwise reject them until they expire.
func (m *Manager) reissueForeign(ctx context.Context, names []string) error {
	root, err := m.ca.rootPEM(ctx)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(root)
	for _, n := range names {
		for _, c := range m.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || verifiesTo(c.Leaf, c.Certificate.Certificate[1:], roots, m.now()) {
				continue
			}
			m.log.Warn("internal certificate not issued by current root; reissuing", zap.String("name", n))
			if err := m.magic.RenewCertSync(ctx, n, true); err != nil {
				return fmt.Errorf("%s: reissuing certificate: %w", n, err)
			}
			if _, err := m.magic.CacheManagedCertificate(ctx, n); err != nil {
				return fmt.Errorf("%s: loading reissued certificate: %w", n, err)
			}
			m.cache.Remove([]string{c.Hash()})
		}
	}
	return nil
}

func verifiesTo(leaf *x509.Certificate, chain [][]byte, roots *x509.CertPool, now time.Time) bool {
	inter := x509.NewCertPool()
	for _, der := range chain {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now})
	return err == nil
}

// logSource logs, once per Manage, where a name's certificate comes from.
func (m *Manager) logSource(name string) {
	if c := m.ops.Load().lookup(name); c != nil {
		m.log.Info("serving certificate", zap.String("name", name), zap.String("issuer", IssuerOperator),
			zap.String("source", sourceOf(c.file)), zap.Time("not_after", c.cert.Leaf.NotAfter))
		return
	}
	if m.cache == nil {
		return
	}
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil {
			m.log.Info("serving certificate", zap.String("name", name), zap.String("issuer", string(m.cfg.Issuer)),
				zap.String("source", issuerSource(m.cfg)), zap.Time("not_after", c.Leaf.NotAfter))
			return
		}
	}
}

// Certificates reports each certificate currently served: operator
// certificates in tls.certificates order, then the issuer's by name.
func (m *Manager) Certificates() []CertInfo {
	var out []CertInfo
	for _, c := range m.ops.Load().certs {
		info := certInfo(c.cert.Leaf, c.names, IssuerOperator, sourceOf(c.file))
		info.LastRenewal = m.lastEvent(fileEventKey(sourceOf(c.file)))
		out = append(out, info)
	}
	if m.cache == nil {
		return out
	}
	source := m.cfg.Internal.CAName
	if m.cfg.Issuer == configs.IssuerACME {
		source = m.cfg.ACME.CA
	}
	m.mu.Lock()
	names := make([]string, 0, len(m.issued))
	for n := range m.issued {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	seen := map[string]bool{}
	for _, n := range names {
		for _, c := range m.cache.AllMatchingCertificates(n) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			info := certInfo(c.Leaf, c.Names, string(m.cfg.Issuer), source)
			info.LastRenewal = m.lastEvent(n)
			out = append(out, info)
		}
	}
	return out
}

func certInfo(leaf *x509.Certificate, names []string, issuer, source string) CertInfo {
	sum := sha256.Sum256(leaf.Raw)
	return CertInfo{
		Names:     slices.Clone(names),
		Issuer:    issuer,
		Source:    source,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		SHA256:    hex.EncodeToString(sum[:]),
	}
}

// RootPEM returns the internal CA's root certificate as PEM, creating the
// CA in storage if it is absent. It works whatever tls.issuer is.
func (m *Manager) RootPEM() ([]byte, error) {
	if strings.TrimSpace(m.cfg.Internal.CAName) == "" {
		return nil, errors.New("tls.internal.ca_name: must not be empty")
	}
	// Bounded: the storage lock waits for another process creating the CA.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return m.ca.rootPEM(ctx)
}

// HTTPChallengeHandler wraps next so that ACME HTTP-01 challenges
// (/.well-known/acme-challenge/) are answered; for other issuers, or with
// the HTTP challenge disabled, it returns next. A nil next answers 404.
func (m *Manager) HTTPChallengeHandler(next http.Handler) http.Handler {
	if next == nil {
		next = http.NotFoundHandler()
	}
	if m.acme == nil || m.cfg.ACME.DisableHTTPChallenge {
		return next
	}
	return m.acme.HTTPChallengeHandler(next)
}

// Close stops certmagic's maintenance goroutine. It is idempotent.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		if m.cache != nil {
			m.cache.Stop()
		}
	})
}
