package tlsmgr

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Run watches the operator certificate files and reloads an entry when its
// files' contents change, without a restart; a new file that fails to load
// keeps the old certificate and logs an error (once per change). It warns
// about operator certificates that expire within 30 days, daily (and at each
// load). It returns nil when ctx ends.
//
// Files are polled (every 5 seconds) rather than watched with fsnotify:
// operators replace certificates by copying over network shares and by
// rename, which notification APIs report inconsistently across Windows and
// Linux, and hashing a few kilobytes is cheap.
func (m *Manager) Run(ctx context.Context) error {
	poll := time.NewTicker(m.pollInterval)
	defer poll.Stop()
	daily := time.NewTicker(m.expiryInterval)
	defer daily.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			_ = m.reload(ctx, false) // errors are logged
		case <-daily.C:
			for _, c := range m.ops.Load().certs {
				m.checkExpiry(c)
			}
		}
	}
}

// Reload re-reads every operator certificate file now (for SIGHUP). An entry
// whose files changed is replaced if it loads; one that fails keeps its
// previous certificate, and the returned error lists every failure.
func (m *Manager) Reload(ctx context.Context) error {
	return m.reload(ctx, true)
}

// reload replaces the operator certificates whose files changed. Unless
// force is set, a failure identical to the previous one is neither retried
// nor logged again.
func (m *Manager) reload(ctx context.Context, force bool) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	old := m.ops.Load()
	next := slices.Clone(old.certs)
	changed := false
	var errs []error
	for i, f := range m.cfg.Certificates {
		files, digest, err := readOperatorFiles(f)
		var c *operatorCert
		attempt := ""
		if err == nil {
			if digest == old.certs[i].digest {
				m.failures[i] = ""
				continue
			}
			attempt = hex.EncodeToString(digest[:])
			c, err = parseOperatorCert(i, f, files, digest)
		} else {
			attempt = err.Error()
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", certKey(i, f), err)
			errs = append(errs, err)
			if force || m.failures[i] != attempt {
				m.log.Error("operator certificate reload failed; keeping the previous one",
					zap.String("file", sourceOf(f)), zap.Error(err))
				m.record(fileEventKey(sourceOf(f)), IssuerOperator, OperationReload, err)
			}
			m.failures[i] = attempt
			continue
		}
		m.failures[i] = ""
		next[i] = c
		changed = true
		m.logLoaded(c, "operator certificate reloaded")
		m.record(fileEventKey(sourceOf(f)), IssuerOperator, OperationReload, nil)
	}
	if changed {
		m.ops.Store(newOperatorSet(next))
		m.coverUncovered(ctx)
	}
	return errors.Join(errs...)
}

// coverUncovered hands to the issuer the managed names that the operator
// certificates no longer cover after a reload, so they keep being served.
func (m *Manager) coverUncovered(ctx context.Context) {
	ops := m.ops.Load()
	var orphans []string
	m.mu.Lock()
	for _, n := range m.names {
		if ops.lookup(n) == nil && !m.issued[n] {
			orphans = append(orphans, n)
		}
	}
	m.mu.Unlock()
	if len(orphans) == 0 {
		return
	}
	if m.magic == nil {
		m.log.Error("no certificate covers names; add an operator certificate for them",
			zap.Strings("names", orphans))
		return
	}
	m.log.Warn("operator certificates no longer cover names; obtaining them from the issuer",
		zap.Strings("names", orphans))
	// In the background: reload runs in Run's loop, which must keep polling.
	if err := m.magic.ManageAsync(ctx, orphans); err != nil {
		m.log.Error("managing uncovered names", zap.Strings("names", orphans), zap.Error(err))
		return
	}
	m.mu.Lock()
	for _, n := range orphans {
		m.issued[n] = true
	}
	m.mu.Unlock()
}

// logLoaded logs a loaded operator certificate and checks its expiry.
func (m *Manager) logLoaded(c *operatorCert, msg string) {
	m.log.Info(msg, zap.String("file", sourceOf(c.file)), zap.Strings("names", c.names),
		zap.Time("not_after", c.cert.Leaf.NotAfter))
	m.checkExpiry(c)
}

// checkExpiry logs an error for an expired operator certificate and a
// warning for one that expires within 30 days.
func (m *Manager) checkExpiry(c *operatorCert) {
	notAfter := c.cert.Leaf.NotAfter
	left := notAfter.Sub(m.now())
	fields := []zap.Field{zap.String("file", sourceOf(c.file)), zap.Strings("names", c.names), zap.Time("not_after", notAfter)}
	switch {
	case left <= 0:
		m.log.Error("operator certificate expired", fields...)
	case left < expiryWarning:
		m.log.Warn("operator certificate expires soon", append(fields, zap.Int("days_left", int(left.Hours()/24)))...)
	}
}
