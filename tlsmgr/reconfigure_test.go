package tlsmgr

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

// TestReconfigure applies reloaded configurations: names are added and
// removed, operator certificates replaced; a configuration with an
// unreadable operator file changes nothing.
func TestReconfigure(t *testing.T) {
	ca := newTestCA(t, "Reconfigure Test CA")
	dir := t.TempDir()
	op := writePair(t, dir, "op", ca.MustIssue(t, testpki.Options{}, "op.test"))
	mt := NewMetrics()
	m, err := New(internalConfig(), t.TempDir(), zaptest.NewLogger(t), WithMetrics(mt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := context.Background()
	if err := m.Manage(ctx, []string{"a.test", "b.test"}); err != nil {
		t.Fatal(err)
	}

	next := withCerts(internalConfig(), op)
	sum, err := m.Reconfigure(ctx, next, []string{"a.test", "c.test", "op.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Added, []string{"c.test", "op.test"}) || !slices.Equal(sum.Removed, []string{"b.test"}) ||
		!slices.Equal(sum.OperatorFile, []string{op.CertFile}) {
		t.Errorf("summary %+v", sum)
	}
	if missing := m.Missing(); len(missing) != 0 {
		t.Errorf("Missing = %v after Reconfigure", missing)
	}
	addr := serveTLS(t, m.ServerTLSConfig("a.test"))
	cs, err := handshake(t, addr, &tls.Config{ServerName: "op.test", RootCAs: testpki.MustPoolOf(t, ca.PEM)})
	if err != nil {
		t.Fatalf("op.test after Reconfigure: %v", err)
	}
	if !cs.PeerCertificates[0].Equal(m.ops.Load().certs[0].cert.Leaf) {
		t.Error("op.test is not served the operator certificate")
	}
	for _, c := range m.Certificates() {
		if slices.Contains(c.Names, "b.test") {
			t.Errorf("b.test still listed after its removal: %+v", c)
		}
		if c.Issuer == IssuerOperator && (c.LastRenewal == nil || c.LastRenewal.Operation != OperationReload || c.LastRenewal.Result != ResultSuccess) {
			t.Errorf("operator certificate last_renewal %+v, want a successful reload", c.LastRenewal)
		}
		if c.Issuer == string(configs.IssuerInternal) && (c.LastRenewal == nil || c.LastRenewal.Operation != OperationObtain) {
			t.Errorf("%v: last_renewal %+v, want the obtain", c.Names, c.LastRenewal)
		}
	}

	// An entry that does not load refuses the whole reload.
	broken := next
	broken.Certificates = append(slices.Clone(next.Certificates), configs.CertificateFile{CertFile: dir + "/missing.crt", KeyFile: dir + "/missing.key"})
	if _, err := m.Reconfigure(ctx, broken, []string{"a.test", "d.test"}); err == nil || !strings.Contains(err.Error(), "tls.certificates[1].cert_file") {
		t.Fatalf("Reconfigure with a missing file = %v, want an error naming tls.certificates[1].cert_file", err)
	}
	m.mu.Lock()
	names := slices.Clone(m.names)
	m.mu.Unlock()
	if !slices.Equal(names, []string{"a.test", "c.test", "op.test"}) {
		t.Errorf("names after a refused Reconfigure = %v, want them unchanged", names)
	}
	if got := testutil.ToFloat64(mt.operations.WithLabelValues(string(configs.IssuerInternal), OperationObtain, ResultSuccess)); got != 3 {
		t.Errorf("obtain successes = %v, want 3 (a, b, c)", got)
	}
}

// TestMetricsCollect checks the expiry series of a Manager's names.
func TestMetricsCollect(t *testing.T) {
	ca := newTestCA(t, "Metrics Test CA")
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	op := writePair(t, t.TempDir(), "op", ca.MustIssue(t, testpki.Options{NotAfter: notAfter}, "op.test"))
	mt := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(mt); err != nil {
		t.Fatal(err)
	}
	m, err := New(withCerts(internalConfig(), op), t.TempDir(), zaptest.NewLogger(t), WithMetrics(mt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Manage(context.Background(), []string{"op.test", "int.test"}); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "gateway_certificate_expiry_seconds"); err != nil || n != 2 {
		t.Fatalf("expiry series: %d, %v; want one per name", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gateway_certificate_not_after_timestamp_seconds" {
			continue
		}
		for _, s := range mf.Metric {
			labels := map[string]string{}
			for _, l := range s.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["name"] == "op.test" && (labels["issuer"] != IssuerOperator || s.Gauge.GetValue() != float64(notAfter.Unix())) {
				t.Errorf("op.test: %v = %v, want operator %d", labels, s.Gauge.GetValue(), notAfter.Unix())
			}
			if labels["name"] == "int.test" && labels["issuer"] != string(configs.IssuerInternal) {
				t.Errorf("int.test: %v", labels)
			}
		}
	}
}

// TestPlanSourcesInStorage says where a certificate will come from before
// and after it is obtained into storage.
func TestPlanSourcesInStorage(t *testing.T) {
	storage := t.TempDir()
	cfg := internalConfig()
	got, err := PlanSourcesIn(cfg, storage, []string{"app.test"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `will be obtained from internal CA "Test Gateway CA" at start`; got[0].Source != want || !got[0].NotAfter.IsZero() {
		t.Errorf("before: %+v, want %q", got[0], want)
	}
	m := newManager(t, cfg, storage)
	if err := m.Manage(context.Background(), []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	got, err = PlanSourcesIn(cfg, storage, []string{"app.test"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := m.managedLeaf("app.test")
	if !got[0].NotAfter.Equal(leaf.NotAfter) || !strings.Contains(got[0].Source, "in storage, expires "+leaf.NotAfter.UTC().Format(time.DateOnly)) {
		t.Errorf("after: %+v, want the stored leaf's expiry %s", got[0], leaf.NotAfter)
	}
}
