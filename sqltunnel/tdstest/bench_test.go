package tdstest

import (
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// BenchmarkSelect1 measures one SELECT 1 round trip on a clear-text
// connection: the double's per-request cost.
func BenchmarkSelect1(b *testing.B) {
	f := newBenchFixture(b)
	c := plainLogin(b, f, tds.Login7Builder{})
	req := batchPayload("SELECT 1")
	b.ReportAllocs()
	for b.Loop() {
		c.send(tds.PacketSQLBatch, req)
		c.read()
	}
}

// BenchmarkRowset64MiB streams tdstest.rows(1024, 65536) with 32767-byte
// packets and discards it: the double's streaming throughput, and proof that
// a result costs a packet of memory, not its size.
func BenchmarkRowset64MiB(b *testing.B) {
	f := newBenchFixture(b)
	c := plainLogin(b, f, tds.Login7Builder{PacketSize: tds.MaxPacketSize})
	req := batchPayload("SELECT * FROM tdstest.rows(1024, 65536)")
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	for b.Loop() {
		c.send(tds.PacketSQLBatch, req)
		for {
			h, _, err := c.r.ReadPacket()
			if err != nil {
				b.Fatal(err)
			}
			if h.EOM() {
				break
			}
		}
	}
}

// newBenchFixture is newFixture for benchmarks, quiet.
func newBenchFixture(b *testing.B) *fixture {
	b.Helper()
	cert, rootPEM, err := NewCertificate()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Config{Certificate: &cert, Users: map[string]string{testUser: testPassword}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	return &fixture{srv: srv, rootPEM: rootPEM}
}
