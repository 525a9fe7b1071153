package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

const waitLimit = 10 * time.Second

// testResponder is a Responder serving on 127.0.0.1:0 for one test, with
// its results reported on a channel.
type testResponder struct {
	*Responder
	addr    *net.UDPAddr
	metrics *Metrics
	results chan string
}

func startResponder(t *testing.T, instances []Instance, opts ...Option) *testResponder {
	t.Helper()
	m := NewMetrics()
	r, err := New(Config{Listen: "127.0.0.1:0", ServerName: "GW01", Instances: instances}, zaptest.NewLogger(t), append([]Option{WithMetrics(m)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	tr := &testResponder{Responder: r, metrics: m, results: make(chan string, 100000)}
	r.onHandled = func(result string) { tr.results <- result }
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	tr.addr = r.Addr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tr
}

// waitHandled waits until n more datagrams have been handled and returns
// their results. Replies are sent before a datagram counts as handled, and
// on loopback a sent datagram is already in the receiver's queue.
func (tr *testResponder) waitHandled(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	var out []string
	for len(out) < n {
		select {
		case r := <-tr.results:
			out = append(out, r)
		case <-deadline.C:
			t.Fatalf("%d of %d datagrams handled within %v", len(out), n, waitLimit)
		}
	}
	return out
}

func (tr *testResponder) count(typ MessageType, result string) int {
	return int(testutil.ToFloat64(tr.metrics.requests.WithLabelValues(typ.String(), result)))
}

// client is a UDP socket on laddr (127.0.0.1:0 unless another loopback
// address is given, which makes a distinct source for the rate limit).
func client(t *testing.T, laddr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(laddr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, to *net.UDPAddr, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDP(b, to); err != nil {
		t.Fatal(err)
	}
}

// drain returns the datagrams queued on c. Call it after waitHandled: the
// replies are queued by then, and the short deadline only ends the drain
// (a deadline already past would not even look at the queue).
func drain(t *testing.T, c *net.UDPConn) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 70000)
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
}

func request(t *testing.T, r Request) []byte {
	t.Helper()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var twoInstances = []Instance{{Name: "SQLEXPRESS", Port: 50001}, {Name: "Reports", Port: 50002, Version: "15.0.2000.5"}}

const (
	sqlexpressText = "ServerName;GW01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0.1000.6;tcp;50001;;"
	reportsText    = "ServerName;GW01;InstanceName;Reports;IsClustered;No;Version;15.0.2000.5;tcp;50002;;"
)

// TestResponderAnswers: each request type gets exactly its text plus the
// 3-byte header, in one datagram, and nothing else.
func TestResponderAnswers(t *testing.T) {
	tr := startResponder(t, twoInstances)
	tests := []struct {
		name string
		req  []byte
		text string
	}{
		{"ucast_inst", clientRequests["freetds"], sqlexpressText},
		{"ucast_inst_lower_no_nul", []byte("\x04sqlexpress"), sqlexpressText},
		{"ucast_inst_other_case", request(t, Request{Type: TypeInstance, Instance: "REPORTS"}), reportsText},
		{"ucast_ex", clientRequests["go_mssqldb"], sqlexpressText + reportsText},
		{"bcast_ex", clientRequests["tedious_jtds"], sqlexpressText + reportsText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, "127.0.0.1:0")
			send(t, c, tr.addr, tc.req)
			if res := tr.waitHandled(t, 1); res[0] != ResultAnswered {
				t.Fatalf("result %s", res[0])
			}
			got := drain(t, c)
			if len(got) != 1 {
				t.Fatalf("%d datagrams in reply, want 1", len(got))
			}
			want, _ := AppendResponse(nil, []byte(tc.text))
			if !bytes.Equal(got[0], want) {
				t.Fatalf("reply %q, want %q", got[0], want)
			}
			if len(got[0]) != len(tc.text)+3 {
				t.Fatalf("reply of %d bytes for %d bytes of text", len(got[0]), len(tc.text))
			}
		})
	}
	if n := tr.count(TypeInstance, ResultAnswered); n != 3 {
		t.Errorf("clnt_ucast_inst answered = %d, want 3", n)
	}
	if n := testutil.ToFloat64(tr.metrics.replyBytes); n != float64(2*(len(sqlexpressText)+3)+len(reportsText)+3+2*(len(sqlexpressText)+len(reportsText)+3)) {
		t.Errorf("reply bytes = %v", n)
	}
}

// TestResponderSilence: an unknown instance, a DAC request and malformed
// datagrams get no answer and are counted. Each is followed by a valid
// request on the same socket: the responder handles datagrams in order,
// so the only reply must be the valid one's.
func TestResponderSilence(t *testing.T) {
	tr := startResponder(t, twoInstances)
	tests := []struct {
		name   string
		in     []byte
		typ    MessageType
		result string
	}{
		{"unknown_instance", request(t, Request{Type: TypeInstance, Instance: "NOSUCH"}), TypeInstance, ResultUnknownInstance},
		{"dac", clientRequests["go_mssqldb_dac"], TypeDAC, ResultDACIgnored},
		{"dac_unknown", request(t, Request{Type: TypeDAC, Instance: "NOSUCH"}), TypeDAC, ResultDACIgnored},
		{"empty_datagram", []byte{}, 0, ResultMalformed},
		{"unknown_type", []byte{0x01}, 0, ResultMalformed},
		{"a_response", []byte{0x05, 0x00, 0x00}, 0, ResultMalformed},
		{"ucast_ex_trailing", []byte{0x03, 0x00}, TypeUnicast, ResultMalformed},
		{"ucast_inst_empty", []byte{0x04, 0x00}, TypeInstance, ResultMalformed},
		{"ucast_inst_33", append([]byte{0x04}, strings.Repeat("A", 33)...), TypeInstance, ResultMalformed},
		{"oversized", append([]byte{0x03}, make([]byte, 2000)...), TypeUnicast, ResultMalformed},
		{"huge", append([]byte{0x02}, make([]byte, 60000)...), TypeBroadcast, ResultMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, "127.0.0.1:0")
			before := tr.count(tc.typ, tc.result)
			send(t, c, tr.addr, tc.in)
			send(t, c, tr.addr, clientRequests["freetds"])
			res := tr.waitHandled(t, 2)
			if res[0] != tc.result || res[1] != ResultAnswered {
				t.Fatalf("results %v, want [%s answered]", res, tc.result)
			}
			got := drain(t, c)
			want, _ := AppendResponse(nil, []byte(sqlexpressText))
			if len(got) != 1 || !bytes.Equal(got[0], want) {
				t.Fatalf("replies %q, want only the valid request's", got)
			}
			if n := tr.count(tc.typ, tc.result); n != before+1 {
				t.Errorf("requests_total{type=%q,result=%q} went from %d to %d", tc.typ, tc.result, before, n)
			}
		})
	}
}

// TestResponderRateLimit: a burst from one source is answered up to the
// bucket, then at the sustained rate; another source is not affected. Run
// with a small limit and with the defaults.
func TestResponderRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		opts  []Option
	}{
		{"10_per_second_burst_5", 10, 5, []Option{WithRateLimit(10, 5)}},
		{"defaults", DefaultRate, DefaultBurst, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRateLimit(t, tc.rate, tc.burst, tc.opts...)
		})
	}
}

func testRateLimit(t *testing.T, rate float64, burst int, opts ...Option) {
	tr := startResponder(t, twoInstances, opts...)
	a := client(t, "127.0.0.1:0")
	req := clientRequests["go_mssqldb"]
	start := time.Now()

	// Three bursts' worth at once: the bucket's worth is answered. Sent in
	// chunks of 50 so that the responder's socket buffer never overflows
	// (a dropped datagram would never be handled).
	blast := 3 * burst
	for sent := 0; sent < blast; {
		n := min(50, blast-sent)
		for range n {
			send(t, a, tr.addr, req)
		}
		tr.waitHandled(t, n)
		sent += n
	}
	answered := len(drain(t, a))
	t.Logf("burst: %d of %d answered (burst %d)", answered, blast, burst)
	if answered < burst || answered > burst+1 {
		t.Fatalf("burst: %d of %d answered, want %d", answered, blast, burst)
	}

	// Meanwhile another source is answered at once.
	b := client(t, "127.0.0.2:0")
	send(t, b, tr.addr, req)
	tr.waitHandled(t, 1)
	if got := drain(t, b); len(got) != 1 {
		t.Fatalf("another source got %d replies, want 1", len(got))
	}

	// 100 requests a second for 1.5 s: about rate a second are answered.
	paced := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	phase := time.Now()
	for time.Since(phase) < 1500*time.Millisecond {
		<-tick.C
		send(t, a, tr.addr, req)
		paced++
	}
	tr.waitHandled(t, paced)
	elapsed := time.Since(phase)
	got := len(drain(t, a))
	total := time.Since(start)
	t.Logf("sustained: %d of %d answered in %v (%.1f/s; limit %v/s)", got, paced, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds(), rate)
	// Never more than the burst plus the rate over the whole test...
	if maxAnswers := burst + int(rate*total.Seconds()) + 1; answered+got > maxAnswers {
		t.Fatalf("%d answers in %v, more than %d", answered+got, total, maxAnswers)
	}
	// ...and the sustained rate is served.
	if minAnswers := int(rate*elapsed.Seconds()) - 2; got < minAnswers {
		t.Fatalf("sustained: %d answered, want at least %d", got, minAnswers)
	}
	if n := tr.count(TypeUnicast, ResultRateLimited); n != blast+paced-answered-got {
		t.Errorf("rate_limited = %d, want %d", n, blast+paced-answered-got)
	}
}

// TestResponderSpoofedSources: requests from many source addresses (as
// spoofing would produce) neither grow the table past its bound nor get
// more answers than the table plus the shared bucket allow.
func TestResponderSpoofedSources(t *testing.T) {
	const maxSources, burst, sources = 20, 2, 200
	// 0.1 a second: no bucket refills, and no generation of the table
	// rotates, while the test runs.
	tr := startResponder(t, twoInstances, WithRateLimit(0.1, burst), WithMaxSources(maxSources))
	conns := make([]*net.UDPConn, sources)
	for i := range conns {
		conns[i] = client(t, fmt.Sprintf("127.1.%d.%d:0", i/250, 1+i%250))
		for range 3 {
			send(t, conns[i], tr.addr, clientRequests["freetds"])
		}
		// Source by source, so that the responder's socket buffer never
		// overflows (a dropped datagram would never be handled).
		tr.waitHandled(t, 3)
	}
	answered := 0
	for _, c := range conns {
		answered += len(drain(t, c))
	}
	tracked := testutil.ToFloat64(tr.metrics.sources)
	t.Logf("%d sources x 3 requests: %d answered, %v sources tracked", sources, answered, tracked)
	if tracked > 2*maxSources {
		t.Errorf("%v sources tracked, bound %d", tracked, 2*maxSources)
	}
	// 20 tracked sources get their burst of 2; the other 180 share one
	// bucket of 2.
	if maxAnswers := maxSources*burst + burst; answered > maxAnswers {
		t.Errorf("%d answers, want at most %d", answered, maxAnswers)
	}
}

func TestResponderSetInstances(t *testing.T) {
	tr := startResponder(t, twoInstances)
	c := client(t, "127.0.0.1:0")
	if err := tr.SetInstances([]Instance{{Name: "NEW", Port: 1533}}); err != nil {
		t.Fatal(err)
	}
	send(t, c, tr.addr, request(t, Request{Type: TypeInstance, Instance: "SQLEXPRESS"}))
	send(t, c, tr.addr, request(t, Request{Type: TypeInstance, Instance: "new"}))
	send(t, c, tr.addr, clientRequests["go_mssqldb"])
	if res := tr.waitHandled(t, 3); res[0] != ResultUnknownInstance || res[1] != ResultAnswered || res[2] != ResultAnswered {
		t.Fatalf("results %v", res)
	}
	got := drain(t, c)
	const newText = "ServerName;GW01;InstanceName;NEW;IsClustered;No;Version;16.0.1000.6;tcp;1533;;"
	want, _ := AppendResponse(nil, []byte(newText))
	if len(got) != 2 || !bytes.Equal(got[0], want) || !bytes.Equal(got[1], want) {
		t.Fatalf("replies %q, want two of %q", got, want)
	}

	for name, bad := range map[string][]Instance{
		"duplicate":  {{Name: "A", Port: 1}, {Name: "a", Port: 2}},
		"port_zero":  {{Name: "A"}},
		"port_big":   {{Name: "A", Port: 65536}},
		"empty_name": {{Port: 1}},
		"semicolon":  {{Name: "A;B", Port: 1}},
		"long_name":  {{Name: strings.Repeat("A", 33), Port: 1}},
		"version":    {{Name: "A", Port: 1, Version: "v16"}},
	} {
		if err := tr.SetInstances(bad); err == nil {
			t.Errorf("%s: SetInstances(%+v) accepted", name, bad)
		}
	}
	if got := tr.Instances(); len(got) != 1 || got[0] != "NEW" {
		t.Errorf("after refused updates, instances %v, want [NEW]", got)
	}
	// No instance at all: nothing to answer, even to a list request.
	if err := tr.SetInstances(nil); err != nil {
		t.Fatal(err)
	}
	send(t, c, tr.addr, clientRequests["go_mssqldb"])
	if res := tr.waitHandled(t, 1); res[0] != ResultUnknownInstance {
		t.Fatalf("list request with no instance: %v", res)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		opts []Option
	}{
		{"rate_zero", Config{}, []Option{WithRateLimit(0, 1)}},
		{"burst_zero", Config{}, []Option{WithRateLimit(1, 0)}},
		{"sources_zero", Config{}, []Option{WithMaxSources(0)}},
		{"server_name", Config{ServerName: "A;B"}, nil},
		{"server_name_long", Config{ServerName: strings.Repeat("S", 256)}, nil},
		{"instances", Config{Instances: []Instance{{Name: "A"}}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil, tc.opts...); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	r, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.cfg.ServerName; n == "" || n != strings.ToUpper(n) || strings.Contains(n, ".") {
		t.Errorf("default server name %q", n)
	}
}

func TestServeLifecycle(t *testing.T) {
	r, err := New(Config{Listen: "127.0.0.1:0", Instances: twoInstances}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Addr() != nil {
		t.Fatal("Addr before Listen")
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	// The address is taken: a second responder on it fails to listen.
	other, _ := New(Config{Listen: r.Addr().String()}, nil)
	if err := other.Serve(context.Background()); err == nil {
		t.Fatal("a second responder served on an address in use")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := r.Serve(context.Background()); err == nil {
		t.Fatal("Serve after the end accepted")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestMetricsCollector: the collector registers in a private registry and
// exposes its series.
func TestMetricsCollector(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	m.request(TypeInstance, ResultAnswered)
	m.reply(90)
	m.setSources(3)
	var nilM *Metrics
	nilM.request(TypeInstance, ResultAnswered) // a nil collector records nothing
	n, err := testutil.GatherAndCount(reg, "gateway_sql_browser_requests_total", "gateway_sql_browser_reply_bytes_total", "gateway_sql_browser_sources")
	if err != nil || n != 3 {
		t.Fatalf("gathered %d series, %v", n, err)
	}
}
