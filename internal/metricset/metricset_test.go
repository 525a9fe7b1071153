package metricset

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type collector struct {
	set Set
	vec *prometheus.CounterVec
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { c.set.Describe(ch) }
func (c *collector) Collect(ch chan<- prometheus.Metric) { c.set.Collect(ch) }

// TestSetDescribesVectorsWithoutChildren: a vector registered before its
// first child is described, so a pedantic registry accepts the children
// it gets later (prometheus.DescribeByCollect would not describe it).
func TestSetDescribesVectorsWithoutChildren(t *testing.T) {
	c := &collector{vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_total", Help: "h"}, []string{"l"})}
	c.set = Set{Parts: []prometheus.Collector{c.vec},
		Descs: []*prometheus.Desc{prometheus.NewDesc("test_computed", "h", nil, nil)}}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	c.vec.WithLabelValues("x").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather after the vector's first child: %v", err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "test_total" {
		t.Errorf("gathered %v", mfs)
	}
	descs := make(chan *prometheus.Desc, 4)
	c.Describe(descs)
	close(descs)
	if n := len(descs); n != 2 {
		t.Errorf("%d descriptors, want the vector's and the computed one", n)
	}
}

// TestLive: parts attached are visited until detached; the zero value works.
func TestLive(t *testing.T) {
	var l Live[string]
	l.Each(func(string) { t.Error("an empty set visits a part") })
	l.Attach("old")
	l.Attach("new")
	l.Attach("new")
	l.Detach("old")
	var seen []string
	l.Each(func(p string) { seen = append(seen, p) })
	if len(seen) != 1 || seen[0] != "new" {
		t.Errorf("visited %v, want [new]", seen)
	}
}
