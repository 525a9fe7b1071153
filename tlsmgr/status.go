package tlsmgr

import (
	"crypto/x509"
	"time"
)

// CertEvent is the outcome of one certificate operation: an obtain or
// renewal by the issuer, or the reload of an operator certificate's files.
type CertEvent struct {
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"` // OperationObtain | OperationRenew | OperationReload
	Result    string    `json:"result"`    // ResultSuccess | ResultFailure
	Error     string    `json:"error,omitempty"`
}

// fileEventKey is the events key of an operator certificate file.
func fileEventKey(file string) string { return "file:" + file }

// record notes the outcome of an operation for /certs and counts it.
func (m *Manager) record(key, issuer, op string, err error) {
	ev := CertEvent{Time: m.now().UTC(), Operation: op, Result: ResultSuccess}
	if err != nil {
		ev.Result, ev.Error = ResultFailure, err.Error()
	}
	m.mu.Lock()
	m.events[key] = ev
	m.mu.Unlock()
	m.metrics.operation(issuer, op, ev.Result)
}

// lastEvent returns the last recorded event for key, or nil.
func (m *Manager) lastEvent(key string) *CertEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev, ok := m.events[key]
	if !ok {
		return nil
	}
	return &ev
}

// managedLeaf returns the issuer's certificate for a normalized name that
// expires last, or nil when certmagic holds none.
func (m *Manager) managedLeaf(name string) *x509.Certificate {
	if m.cache == nil {
		return nil
	}
	var best *x509.Certificate
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.NotAfter)) {
			best = c.Leaf
		}
	}
	return best
}

// Missing returns the managed names (those given to Manage or Reconfigure)
// for which no certificate is loaded right now, in order; nil when every
// name has one. A readiness check uses it: a name in this list gets the
// default certificate or a failed handshake.
func (m *Manager) Missing() []string {
	m.mu.Lock()
	names := append([]string(nil), m.names...)
	m.mu.Unlock()
	ops := m.ops.Load()
	var out []string
	for _, n := range names {
		if ops.lookup(n) == nil && m.managedLeaf(n) == nil {
			out = append(out, n)
		}
	}
	return out
}
