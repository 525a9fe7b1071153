// Package metricset lists a Prometheus collector's parts once, for both
// Describe and Collect.
//
// prometheus.DescribeByCollect would list nothing twice either, but it
// describes only what Collect returns at registration: a labelled vector
// without children yet is left out, and a registry that checks (the
// pedantic ones the tests use) then rejects its children as "collected
// metric with unregistered descriptor". A Set describes every part always.
package metricset

import "github.com/prometheus/client_golang/prometheus"

// Set is the fixed parts of a collector: its metrics and vectors, and the
// descriptors of the metrics it computes at each Collect.
type Set struct {
	Parts []prometheus.Collector
	Descs []*prometheus.Desc
}

// Describe sends every part's descriptors and the computed metrics'.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, p := range s.Parts {
		p.Describe(ch)
	}
	for _, d := range s.Descs {
		ch <- d
	}
}

// Collect collects every part; the computed metrics are the caller's.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, p := range s.Parts {
		p.Collect(ch)
	}
}
