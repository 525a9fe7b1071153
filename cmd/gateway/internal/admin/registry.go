package admin

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gateway-project/gateway/internal/metricset"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Process is the collector of the gateway process as a whole:
//
//	gateway_build_info{version,commit,go_version}  always 1
//	gateway_ready                                  1 when /readyz would answer 200
//	gateway_config_reloads_total{result}           SIGHUP reloads, success or failure
//	gateway_config_last_reload_success_timestamp_seconds
//	gateway_config_last_reload_successful          1 unless the last reload was refused
//
// Its counters are set through ReloadSucceeded and ReloadFailed.
type Process struct {
	set        metricset.Set // the parts below, listed once
	buildInfo  prometheus.Gauge
	reloads    *prometheus.CounterVec
	lastOK     prometheus.Gauge
	lastResult prometheus.Gauge
	ready      *prometheus.Desc
	readyFn    atomic.Pointer[func() []string]
}

// NewProcess creates the process collector; started is when the
// configuration in force was loaded.
func NewProcess(version, commit string, started time.Time) *Process {
	p := &Process{
		buildInfo: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "gateway_build_info",
			Help:        "Always 1; the labels say which gateway build runs.",
			ConstLabels: prometheus.Labels{"version": version, "commit": commit, "go_version": runtime.Version()},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result: success, or failure (the running configuration was kept).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded (start or last successful reload), as a Unix timestamp.",
		}),
		lastResult: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_config_last_reload_successful",
			Help: "1 unless the last configuration reload was refused.",
		}),
		ready: prometheus.NewDesc("gateway_ready", "1 when the gateway is ready to take traffic (/readyz answers 200).", nil, nil),
	}
	p.set = metricset.Set{Parts: []prometheus.Collector{p.buildInfo, p.reloads, p.lastOK, p.lastResult}, Descs: []*prometheus.Desc{p.ready}}
	p.buildInfo.Set(1)
	p.lastOK.Set(float64(started.Unix()))
	p.lastResult.Set(1)
	p.reloads.WithLabelValues("success")
	p.reloads.WithLabelValues("failure")
	return p
}

// SetReady sets the readiness function gateway_ready reports.
func (p *Process) SetReady(fn func() []string) { p.readyFn.Store(&fn) }

// ReloadSucceeded counts a reload that was applied at t.
func (p *Process) ReloadSucceeded(t time.Time) {
	p.reloads.WithLabelValues("success").Inc()
	p.lastOK.Set(float64(t.Unix()))
	p.lastResult.Set(1)
}

// ReloadFailed counts a reload that was refused.
func (p *Process) ReloadFailed() {
	p.reloads.WithLabelValues("failure").Inc()
	p.lastResult.Set(0)
}

// Describe implements prometheus.Collector.
func (p *Process) Describe(ch chan<- *prometheus.Desc) { p.set.Describe(ch) }

// Collect implements prometheus.Collector.
func (p *Process) Collect(ch chan<- prometheus.Metric) {
	p.set.Collect(ch)
	v := 1.0
	if fn := p.readyFn.Load(); fn != nil && len((*fn)()) > 0 {
		v = 0
	}
	ch <- prometheus.MustNewConstMetric(p.ready, prometheus.GaugeValue, v)
}

// NewRegistry returns a private registry (never Prometheus's global one)
// holding the Go runtime and process collectors and the given collectors.
// It fails when two collectors describe the same series inconsistently.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	all := append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
