package sqltunnel

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gateway-project/gateway/internal/metricset"

	"github.com/gateway-project/gateway/tlsmgr"
)

// Metrics is the Prometheus collector of the TDS listeners. One Metrics is
// shared by every Listener of the process (WithMetrics), so that counters
// survive listeners replaced by a configuration reload. Series:
//
//	gateway_tds_connections_total{listener,dialect,client_encryption,negotiated,outcome}
//	    client connections, counted when they end. dialect: tds7 | tds8 |
//	    unknown; client_encryption: the PRELOGIN ENCRYPTION value as the client
//	    sent it (ON, OFF, REQ, NOT_SUP, absent; none before any PRELOGIN);
//	    negotiated: tls | plain | none; outcome: the login outcome (ok,
//	    login_failed, refused, upstream_error, client_gone) or why the
//	    connection ended before a login (handshake_failed, refused_encryption,
//	    malformed, not_tds, client_closed, timeout, over_limit)
//	gateway_tds_logins_total{listener,outcome}
//	    login attempts by outcome; login_failed is the upstream refusing the
//	    credentials (error 18456 and friends)
//	gateway_tds_logins_tls_total{listener,client_tls,upstream_tls,outcome}
//	    login attempts by the TLS version of each leg ("1.2", "1.3", or
//	    "none") and outcome: what the audit report and the status page
//	    show as "every login crossed the network encrypted"
//	gateway_tds_refusals_total{listener,error_number}
//	    logins the gateway refused with its own ERROR (5090x), by number
//	gateway_tds_bytes_total{listener,direction}
//	    TDS bytes relayed, direction to_upstream or to_client, counted as they move
//	gateway_tds_connections_active{listener}
//	    client connections open now
//	gateway_tds_upstream_up{listener}
//	    1 unless the last attempt to connect to the listener's SQL Server failed
//	gateway_tls_handshakes_total{protocol="tds",listener,version,result}
//	    client TLS handshakes (TDS 7.x inside PRELOGIN and TDS 8)
//
// Create it with NewMetrics and register it in the process's registry; no
// global registry is used. A nil *Metrics records nothing.
type Metrics struct {
	set metricset.Set // the parts below, listed once

	connections *prometheus.CounterVec
	logins      *prometheus.CounterVec
	loginsTLS   *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
	active      *prometheus.Desc
	upstreamUp  *prometheus.Desc

	listeners metricset.Live[*Listener] // serving or retired with sessions left
}

// NewMetrics creates the collector; nothing is registered anywhere.
func NewMetrics() *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_tds_connections_total",
			Help: "TDS client connections, counted when they end, by listener, dialect, client encryption as sent, negotiated encryption and outcome.",
		}, []string{"listener", "dialect", "client_encryption", "negotiated", "outcome"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_tds_logins_total",
			Help: "TDS login attempts by listener and outcome (ok, login_failed, refused, upstream_error, client_gone).",
		}, []string{"listener", "outcome"}),
		loginsTLS: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_tds_logins_tls_total",
			Help: "TDS login attempts by listener, TLS version of the client and upstream legs (none without TLS) and outcome.",
		}, []string{"listener", "client_tls", "upstream_tls", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_tds_refusals_total",
			Help: "TDS logins refused by the gateway with its own ERROR token, by listener and error number.",
		}, []string{"listener", "error_number"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_tds_bytes_total",
			Help: "TDS bytes relayed by listener and direction (to_upstream, to_client).",
		}, []string{"listener", "direction"}),
		handshakes: tlsmgr.NewHandshakeCounter("tds"),
		active: prometheus.NewDesc("gateway_tds_connections_active",
			"TDS client connections open now, by listener.", []string{"listener"}, nil),
		upstreamUp: prometheus.NewDesc("gateway_tds_upstream_up",
			"1 unless the last connection attempt to the listener's SQL Server failed (passive check).", []string{"listener"}, nil),
	}
	m.set = metricset.Set{Parts: []prometheus.Collector{m.connections, m.logins, m.loginsTLS, m.refusals, m.bytes, m.handshakes}, Descs: []*prometheus.Desc{m.active, m.upstreamUp}}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.set.Describe(ch) }

// Collect implements prometheus.Collector. A listener replaced by a reload
// keeps its open sessions, under the same name as its replacement: their
// connections are added together, and the upstream state is the new one's.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.set.Collect(ch)
	active := map[string]int64{}
	up := map[string]float64{}
	m.listeners.Each(func(l *Listener) {
		active[l.cfg.Name] += l.active.Load()
		if !l.retired.Load() {
			v := 1.0
			if l.upstreamDown.Load() {
				v = 0
			}
			up[l.cfg.Name] = v
		}
	})
	for name, n := range active {
		ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(n), name)
	}
	for name, v := range up {
		ch <- prometheus.MustNewConstMetric(m.upstreamUp, prometheus.GaugeValue, v, name)
	}
}

// attach and detach add and remove a listener from the live set.
func (m *Metrics) attach(l *Listener) {
	if m == nil {
		return
	}
	m.listeners.Attach(l)
}

func (m *Metrics) detach(l *Listener) {
	if m == nil {
		return
	}
	m.listeners.Detach(l)
}

// byteCounters returns the listener's counters of bytes to the upstream and
// to the client; nil counters when m is nil.
func (m *Metrics) byteCounters(listener string) (up, down prometheus.Counter) {
	if m == nil {
		return nil, nil
	}
	return m.bytes.WithLabelValues(listener, "to_upstream"), m.bytes.WithLabelValues(listener, "to_client")
}

func (m *Metrics) handshake(listener, version, result string) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(listener, version, result).Inc()
}

// login counts a login attempt: its outcome, the TLS version of each leg
// ("none" without TLS) and, for a refusal, the gateway's error number.
func (m *Metrics) login(listener string, o outcome, clientTLS, upstreamTLS string, errorNumber int32) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(listener, string(o)).Inc()
	m.loginsTLS.WithLabelValues(listener, clientTLS, upstreamTLS, string(o)).Inc()
	if errorNumber != 0 {
		m.refusals.WithLabelValues(listener, strconv.Itoa(int(errorNumber))).Inc()
	}
}

func (m *Metrics) connection(listener, dialect, clientEncryption, negotiated string, o outcome) {
	if m == nil {
		return
	}
	m.connections.WithLabelValues(listener, dialect, clientEncryption, negotiated, string(o)).Inc()
}

// encryptionLabel bounds the client_encryption label: values MS-TDS does
// not define become "other".
func encryptionLabel(v string) string {
	switch {
	case v == "":
		return "none"
	case strings.HasPrefix(v, "Encryption("):
		return "other"
	}
	return v
}
