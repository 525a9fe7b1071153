package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// ReconfigureSummary says what Reconfigure changed.
type ReconfigureSummary struct {
	Added        []string // names managed from now on
	Removed      []string // names no longer managed
	OperatorFile []string // operator certificate files loaded anew (new or changed entries)
}

// Reconfigure applies a reloaded configuration (SIGHUP) all at once or not
// at all: every entry of cfg.Certificates is loaded, the names no operator
// certificate covers are obtained from the issuer as Manage does, and only
// then do the new operator certificates replace the old ones; names that are
// no longer listed stop being managed (certmagic stops renewing them). On
// error nothing served changes; certificates obtained on the way stay in
// storage and cache, unused.
//
// Only tls.certificates may differ from the configuration New was given:
// the issuer, its settings and the storage directory are fixed for the
// life of the Manager (configs.ReloadProblems refuses such reloads).
// Reconfigure is safe to call concurrently with the watcher of Run.
func (m *Manager) Reconfigure(ctx context.Context, cfg configs.TLS, names []string) (ReconfigureSummary, error) {
	var sum ReconfigureSummary
	names = normalizeNames(names)
	for _, n := range names {
		if !certmagic.SubjectQualifiesForCert(n) {
			return sum, fmt.Errorf("%q is not a valid certificate name", n)
		}
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()

	old := m.ops.Load()
	certs := make([]*operatorCert, 0, len(cfg.Certificates))
	var errs []error
	for i, f := range cfg.Certificates {
		c, err := loadOperatorCert(i, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", certKey(i, f), err))
			continue
		}
		certs = append(certs, c)
	}
	if len(errs) > 0 {
		return sum, errors.Join(errs...)
	}
	next := newOperatorSet(certs)

	m.mu.Lock()
	var pending []string
	for _, n := range names {
		if next.lookup(n) == nil && !m.issued[n] {
			pending = append(pending, n)
		}
		if !slices.Contains(m.names, n) {
			sum.Added = append(sum.Added, n)
		}
	}
	for _, n := range m.names {
		if !slices.Contains(names, n) {
			sum.Removed = append(sum.Removed, n)
		}
	}
	m.mu.Unlock()

	if len(pending) > 0 {
		if m.magic == nil {
			return sum, fmt.Errorf("no operator certificate covers %s and tls.issuer is none: add a certificate for it to tls.certificates", strings.Join(pending, ", "))
		}
		if err := m.magic.ManageSync(ctx, pending); err != nil {
			return sum, fmt.Errorf("managing certificates: %w", explainACME(m.cfg.ACME, err))
		}
		if m.cfg.Issuer == configs.IssuerInternal {
			if err := m.reissueForeign(ctx, pending); err != nil {
				return sum, err
			}
		}
	}

	// Commit: nothing below fails.
	for _, c := range certs {
		if !slices.ContainsFunc(old.certs, func(o *operatorCert) bool { return o.digest == c.digest && o.file == c.file }) {
			sum.OperatorFile = append(sum.OperatorFile, sourceOf(c.file))
			m.logLoaded(c, "operator certificate loaded")
			m.record(fileEventKey(sourceOf(c.file)), IssuerOperator, OperationReload, nil)
		}
	}
	m.cfg.Certificates = slices.Clone(cfg.Certificates)
	m.failures = make([]string, len(cfg.Certificates))
	m.ops.Store(next)

	var unmanage []certmagic.SubjectIssuer
	m.mu.Lock()
	for _, n := range pending {
		m.issued[n] = true
	}
	for _, n := range sum.Removed {
		if m.issued[n] {
			delete(m.issued, n)
			unmanage = append(unmanage, certmagic.SubjectIssuer{Subject: n})
		}
		delete(m.events, n)
	}
	m.names = slices.Clone(names)
	m.mu.Unlock()
	if len(unmanage) > 0 && m.cache != nil {
		m.cache.RemoveManaged(unmanage)
	}
	for _, n := range sum.Added {
		m.logSource(n)
	}
	if len(sum.Removed) > 0 {
		m.log.Info("certificates no longer managed", zap.Strings("names", sum.Removed))
	}
	return sum, nil
}
