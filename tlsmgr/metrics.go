package tlsmgr

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gateway-project/gateway/internal/metricset"
)

// Operation and result labels of gateway_certificate_operations_total, also
// used in CertEvent.
const (
	OperationObtain = "obtain" // a certificate obtained from the issuer for the first time
	OperationRenew  = "renew"  // a certificate renewed by the issuer
	OperationReload = "reload" // an operator certificate re-read after its files changed
	ResultSuccess   = "success"
	ResultFailure   = "failure"
)

// Metrics is the Prometheus collector of a Manager:
//
//	gateway_certificate_operations_total{issuer,operation,result}
//	    obtain and renew outcomes reported by certmagic (ACME and internal CA),
//	    and reloads of operator certificate files
//	gateway_certificate_expiry_seconds{name,issuer}
//	    seconds until the certificate served for each managed name expires
//	    (negative once expired); names without a certificate are absent
//	gateway_certificate_not_after_timestamp_seconds{name,issuer}
//	    the same expiry as a Unix timestamp, for alerts that compare with time()
//
// Create it with NewMetrics, register it in the process's registry and pass
// it to New with WithMetrics; it reports on the Manager it was given to.
// A nil *Metrics records nothing.
type Metrics struct {
	set metricset.Set // the parts below, listed once

	operations *prometheus.CounterVec
	expiry     *prometheus.Desc
	notAfter   *prometheus.Desc
	mgr        atomic.Pointer[Manager]
}

// NewMetrics creates the collector; nothing is registered anywhere.
func NewMetrics() *Metrics {
	mt := &Metrics{
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_certificate_operations_total",
			Help: "Certificate obtain and renew operations (certmagic events) and operator certificate reloads, by issuer, operation and result.",
		}, []string{"issuer", "operation", "result"}),
		expiry: prometheus.NewDesc("gateway_certificate_expiry_seconds",
			"Seconds until the certificate served for a name expires; negative once expired.",
			[]string{"name", "issuer"}, nil),
		notAfter: prometheus.NewDesc("gateway_certificate_not_after_timestamp_seconds",
			"Expiry (not_after) of the certificate served for a name, as a Unix timestamp.",
			[]string{"name", "issuer"}, nil),
	}
	mt.set = metricset.Set{Parts: []prometheus.Collector{mt.operations}, Descs: []*prometheus.Desc{mt.expiry, mt.notAfter}}
	return mt
}

// Describe implements prometheus.Collector.
func (mt *Metrics) Describe(ch chan<- *prometheus.Desc) { mt.set.Describe(ch) }

// Collect implements prometheus.Collector.
func (mt *Metrics) Collect(ch chan<- prometheus.Metric) {
	mt.set.Collect(ch)
	m := mt.mgr.Load()
	if m == nil {
		return
	}
	now := m.now()
	for _, s := range m.served() {
		ch <- prometheus.MustNewConstMetric(mt.expiry, prometheus.GaugeValue, s.notAfter.Sub(now).Seconds(), s.name, s.issuer)
		ch <- prometheus.MustNewConstMetric(mt.notAfter, prometheus.GaugeValue, float64(s.notAfter.Unix()), s.name, s.issuer)
	}
}

func (mt *Metrics) operation(issuer, op, result string) {
	if mt == nil {
		return
	}
	mt.operations.WithLabelValues(issuer, op, result).Inc()
}

// Option customises a Manager; see the With functions.
type Option func(*Manager)

// WithMetrics makes the Manager count its operations in mt and report the
// expiry of the certificates it serves. Nil (the default) records nothing.
func WithMetrics(mt *Metrics) Option {
	return func(m *Manager) { m.metrics = mt }
}

// servedCert is the certificate currently served for one managed name.
type servedCert struct {
	name, issuer string
	notAfter     time.Time
}

// served lists, for each managed name that has a certificate, its expiry.
func (m *Manager) served() []servedCert {
	m.mu.Lock()
	names := append([]string(nil), m.names...)
	m.mu.Unlock()
	ops := m.ops.Load()
	out := make([]servedCert, 0, len(names))
	for _, n := range names {
		if c := ops.lookup(n); c != nil {
			out = append(out, servedCert{n, IssuerOperator, c.cert.Leaf.NotAfter})
			continue
		}
		if leaf := m.managedLeaf(n); leaf != nil {
			out = append(out, servedCert{n, string(m.cfg.Issuer), leaf.NotAfter})
		}
	}
	return out
}
