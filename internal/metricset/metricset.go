// Package metricset lists a Prometheus collector's parts once, for both
// Describe and Collect.
//
// prometheus.DescribeByCollect would list nothing twice either, but it
// describes only what Collect returns at registration: a labelled vector
// without children yet is left out, and a registry that checks (the
// pedantic ones the tests use) then rejects its children as "collected
// metric with unregistered descriptor". A Set describes every part always.
package metricset

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

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

// Live is the set of running parts (HTTPS servers, SQL listeners) a
// collector computes metrics from at each Collect. A part joins when it
// starts and leaves once its last connection has ended, so that a part
// replaced by a reload is still counted while it drains. The zero value is
// empty and ready.
type Live[T comparable] struct {
	mu    sync.Mutex
	parts map[T]struct{}
}

// Attach adds p.
func (l *Live[T]) Attach(p T) {
	l.mu.Lock()
	if l.parts == nil {
		l.parts = map[T]struct{}{}
	}
	l.parts[p] = struct{}{}
	l.mu.Unlock()
}

// Detach removes p.
func (l *Live[T]) Detach(p T) {
	l.mu.Lock()
	delete(l.parts, p)
	l.mu.Unlock()
}

// Each calls f for every part, under the set's lock: f only reads.
func (l *Live[T]) Each(f func(T)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.parts {
		f(p)
	}
}
