package browser

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gateway-project/gateway/internal/metricset"
)

// Results of a request, the result label of
// gateway_sql_browser_requests_total.
const (
	ResultAnswered        = "answered"
	ResultUnknownInstance = "unknown_instance"
	ResultDACIgnored      = "dac_ignored"
	ResultRateLimited     = "rate_limited"
	ResultMalformed       = "malformed"
	ResultSendFailed      = "send_failed"
)

// Metrics is the Prometheus collector of the SQL Browser responder. Series:
//
//	gateway_sql_browser_requests_total{type,result}
//	    requests received. type: clnt_bcast_ex | clnt_ucast_ex |
//	    clnt_ucast_inst | clnt_ucast_dac | other (a datagram whose first
//	    byte is no request); result: answered | unknown_instance |
//	    dac_ignored | rate_limited | malformed | send_failed
//	gateway_sql_browser_reply_bytes_total
//	    bytes of SVR_RESP datagrams sent (UDP payload)
//	gateway_sql_browser_sources
//	    source addresses the rate limiter tracks now (bounded)
//
// Create it with NewMetrics and register it in the process's registry; no
// global registry is used. One Metrics can outlive a Responder replaced by a
// reload (WithMetrics). A nil *Metrics records nothing.
type Metrics struct {
	set metricset.Set // the parts below, listed once

	requests   *prometheus.CounterVec
	replyBytes prometheus.Counter
	sources    prometheus.Gauge
}

// NewMetrics creates the collector; nothing is registered anywhere.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_sql_browser_requests_total",
			Help: "SQL Server Browser (MC-SQLR) requests by type and result (answered, unknown_instance, dac_ignored, rate_limited, malformed, send_failed).",
		}, []string{"type", "result"}),
		replyBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_sql_browser_reply_bytes_total",
			Help: "Bytes of SQL Server Browser replies sent (UDP payload).",
		}),
		sources: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_sql_browser_sources",
			Help: "Source addresses the SQL Server Browser rate limiter tracks now.",
		}),
	}
	m.set = metricset.Set{Parts: []prometheus.Collector{m.requests, m.replyBytes, m.sources}}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.set.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.set.Collect(ch)
}

func (m *Metrics) request(typ MessageType, result string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(typ.String(), result).Inc()
}

func (m *Metrics) reply(n int) {
	if m == nil {
		return
	}
	m.replyBytes.Add(float64(n))
}

func (m *Metrics) setSources(n int) {
	if m == nil {
		return
	}
	m.sources.Set(float64(n))
}
