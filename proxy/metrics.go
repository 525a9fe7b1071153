package proxy

import (
	"crypto/tls"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gateway-project/gateway/internal/metricset"

	"github.com/gateway-project/gateway/tlsmgr"
)

// Metrics is the Prometheus collector of the HTTPS front. One Metrics is
// shared by the Servers of the process (WithMetrics), so that its counters
// survive a front that a configuration reload replaces. Series:
//
//	gateway_http_requests_total{site,method,code_class}
//	gateway_http_request_duration_seconds{site,method,code_class}  (histogram)
//	    requests by site (its first host), method (the usual ones, else OTHER)
//	    and status class (1xx..5xx; "none" when no response was written, as
//	    for a request cut by the drain), timed from headers read to
//	    response finished
//	gateway_http_requests_in_flight
//	gateway_http_bytes_total{site,direction}
//	    body bytes: to_upstream (request bodies read from clients) and
//	    to_client (responses written); upgraded (WebSocket) traffic is not counted
//	gateway_http_connections_active, gateway_http_connections_total
//	    client TCP connections open now, and accepted since start
//	gateway_http_upstream_healthy{site,upstream}
//	    1 while the upstream gets requests (neither health check has put it
//	    aside), else 0
//	gateway_http_upstream_requests_in_flight{site,upstream}
//	gateway_http_upstream_errors_total{site,upstream,kind}
//	    failed upstream round trips by error kind (timeout, connection_refused,
//	    tls, ...), as logged in error_kind
//	gateway_tls_handshakes_total{protocol="https",listener="https",version,result}
//	gateway_http_requests_tls_total{tls_version}
//	    requests by the TLS version of the connection that carried them
//	    ("1.2", "1.3"), for the audit report and the status page
//
// Create it with NewMetrics and register it in the process's registry; no
// global registry is used. A nil *Metrics records nothing.
type Metrics struct {
	requests    *prometheus.CounterVec
	requestsTLS *prometheus.CounterVec
	tls12       prometheus.Counter // requestsTLS children, bound once
	tls13       prometheus.Counter
	duration    *prometheus.HistogramVec
	bytes       *prometheus.CounterVec
	connsTotal  prometheus.Counter
	upErrors    *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
	inFlight    *prometheus.Desc
	connsActive *prometheus.Desc
	upHealthy   *prometheus.Desc
	upInFlight  *prometheus.Desc

	set metricset.Set // the parts above, listed once

	servers metricset.Live[*Server]

	// sites holds each site's pre-bound series (siteMetrics), by name.
	sites sync.Map
}

// siteMetrics are one site's series, bound once: a request looks its
// children up by index instead of hashing label values.
type siteMetrics struct {
	toUpstream, toClient prometheus.Counter
	byMethodClass        [len(methodLabels) + 1][len(classLabels)]atomic.Pointer[requestSeries]
}

// requestSeries are the request count and duration of one site, method
// and status class.
type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// methodLabels are the methods counted by name; others are OTHER (the last
// index of siteMetrics.byMethodClass).
var methodLabels = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace}

// classLabels are the status class labels by index: 0 for no response,
// then 1xx to 9xx.
var classLabels = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx"}

// forSite returns the bound series of the site named name.
func (m *Metrics) forSite(name string) *siteMetrics {
	if v, ok := m.sites.Load(name); ok {
		return v.(*siteMetrics)
	}
	sm := &siteMetrics{
		toUpstream: m.bytes.WithLabelValues(name, "to_upstream"),
		toClient:   m.bytes.WithLabelValues(name, "to_client"),
	}
	v, _ := m.sites.LoadOrStore(name, sm)
	return v.(*siteMetrics)
}

// series returns the bound request series of method and status, binding
// them at their first use.
func (sm *siteMetrics) series(m *Metrics, site, method string, status int) *requestSeries {
	mi, ci := methodIndex(method), classIndex(status)
	p := &sm.byMethodClass[mi][ci]
	if rs := p.Load(); rs != nil {
		return rs
	}
	ml, cl := methodLabel(method), codeClass(status)
	rs := &requestSeries{count: m.requests.WithLabelValues(site, ml, cl), duration: m.duration.WithLabelValues(site, ml, cl)}
	p.CompareAndSwap(nil, rs)
	return p.Load()
}

func methodIndex(method string) int {
	for i, m := range methodLabels {
		if m == method {
			return i
		}
	}
	return len(methodLabels)
}

func classIndex(status int) int {
	if status < 100 || status > 999 {
		return 0
	}
	return status / 100
}

// NewMetrics creates the collector; nothing is registered anywhere.
func NewMetrics() *Metrics {
	m := newMetrics()
	m.set = metricset.Set{
		Parts: []prometheus.Collector{m.requests, m.requestsTLS, m.duration, m.bytes, m.connsTotal, m.upErrors, m.handshakes},
		Descs: []*prometheus.Desc{m.inFlight, m.connsActive, m.upHealthy, m.upInFlight},
	}
	m.tls12 = m.requestsTLS.WithLabelValues(tlsmgr.HandshakeVersion(tls.VersionTLS12))
	m.tls13 = m.requestsTLS.WithLabelValues(tlsmgr.HandshakeVersion(tls.VersionTLS13))
	return m
}

func newMetrics() *Metrics {
	return &Metrics{
		requestsTLS: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_tls_total",
			Help: "HTTPS requests by the TLS version of their connection.",
		}, []string{"tls_version"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_total",
			Help: "HTTPS requests by site, method and status class.",
		}, []string{"site", "method", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gateway_http_request_duration_seconds",
			Help:    "Time from a request's headers to the end of its response, by site, method and status class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"site", "method", "code_class"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_bytes_total",
			Help: "HTTP body bytes by site and direction (to_upstream: request bodies; to_client: responses).",
		}, []string{"site", "direction"}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_http_connections_total",
			Help: "Client TCP connections accepted on the HTTPS listener.",
		}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_upstream_errors_total",
			Help: "Failed upstream round trips by site, upstream and error kind.",
		}, []string{"site", "upstream", "kind"}),
		handshakes: tlsmgr.NewHandshakeCounter("https"),
		inFlight: prometheus.NewDesc("gateway_http_requests_in_flight",
			"HTTPS requests being served now.", nil, nil),
		connsActive: prometheus.NewDesc("gateway_http_connections_active",
			"Client TCP connections open now on the HTTPS listener.", nil, nil),
		upHealthy: prometheus.NewDesc("gateway_http_upstream_healthy",
			"1 while the upstream is healthy (active and passive checks), else 0.", []string{"site", "upstream"}, nil),
		upInFlight: prometheus.NewDesc("gateway_http_upstream_requests_in_flight",
			"Requests in progress to the upstream.", []string{"site", "upstream"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.set.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.set.Collect(ch)
	var inFlight, conns int64
	type key struct{ site, upstream string }
	healthy := map[key]float64{}
	upInFlight := map[key]int64{}
	now := time.Now().UnixNano()
	m.servers.Each(func(s *Server) {
		inFlight += int64(s.inflight.count())
		conns += s.conns.Load()
		for _, st := range s.gen.Load().sites {
			for _, u := range st.upstreams {
				k := key{st.name, u.raw}
				v := 0.0
				if u.healthy(now) {
					v = 1
				}
				healthy[k] = v
				upInFlight[k] += u.inflight.Load()
			}
		}
	})
	ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(inFlight))
	ch <- prometheus.MustNewConstMetric(m.connsActive, prometheus.GaugeValue, float64(conns))
	for k, v := range healthy {
		ch <- prometheus.MustNewConstMetric(m.upHealthy, prometheus.GaugeValue, v, k.site, k.upstream)
		ch <- prometheus.MustNewConstMetric(m.upInFlight, prometheus.GaugeValue, float64(upInFlight[k]), k.site, k.upstream)
	}
}

func (m *Metrics) attach(s *Server) {
	if m == nil {
		return
	}
	m.servers.Attach(s)
}

func (m *Metrics) detach(s *Server) {
	if m == nil {
		return
	}
	m.servers.Detach(s)
}

// request records one finished request of site s, carried by TLS version
// tlsVersion (crypto/tls's constant; 0 without TLS).
func (m *Metrics) request(s *site, method string, status int, d time.Duration, in, out int64, tlsVersion uint16) {
	if m == nil {
		return
	}
	sm := s.series.Load()
	if sm == nil {
		sm = m.forSite(s.name)
		s.series.Store(sm)
	}
	switch tlsVersion {
	case tls.VersionTLS12:
		m.tls12.Inc()
	case tls.VersionTLS13:
		m.tls13.Inc()
	case 0:
	default:
		m.requestsTLS.WithLabelValues(tlsmgr.HandshakeVersion(tlsVersion)).Inc()
	}
	rs := sm.series(m, s.name, method, status)
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
	if in > 0 {
		sm.toUpstream.Add(float64(in))
	}
	if out > 0 {
		sm.toClient.Add(float64(out))
	}
}

func (m *Metrics) connAccepted() {
	if m != nil {
		m.connsTotal.Inc()
	}
}

func (m *Metrics) upstreamError(site, upstream, kind string) {
	if m != nil {
		m.upErrors.WithLabelValues(site, upstream, kind).Inc()
	}
}

func (m *Metrics) handshake(version, result string) {
	if m != nil {
		m.handshakes.WithLabelValues("https", version, result).Inc()
	}
}

// methodLabel bounds the method label: a client may send any token.
func methodLabel(method string) string {
	if i := methodIndex(method); i < len(methodLabels) {
		return methodLabels[i]
	}
	return "OTHER"
}

// codeClass is the status class label; 0 (nothing written) is "none".
func codeClass(status int) string { return classLabels[classIndex(status)] }
