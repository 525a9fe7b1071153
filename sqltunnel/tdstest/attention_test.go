package tdstest

import (
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// TestAttentionDuringRowset: an attention while a huge rowset streams stops
// it at a row boundary; the reply ends with a DONE without DONE_MORE and the
// acknowledgement comes as the next message, a lone DONE with DONE_ATTN.
func TestAttentionDuringRowset(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{PacketSize: 8192})
	c.send(tds.PacketSQLBatch, batchPayload("SELECT * FROM tdstest.rows(100000000, 1000)"))

	// Read a few packets of the rowset, then interrupt it.
	for i := 0; i < 3; i++ {
		h, _, err := c.r.ReadPacket()
		if err != nil || h.Type != tds.PacketReply || h.EOM() || int(h.Length) != 8192 {
			t.Fatalf("packet %d: %v %v", i, h, err)
		}
	}
	c.send(tds.PacketAttention, nil)
	var rest []byte
	for {
		h, p, err := c.r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, p...)
		if h.EOM() {
			break
		}
	}
	if d := lastDone(t, rest); d.Status != tds.DoneFinal || d.Token != tds.TokenDone {
		t.Fatalf("interrupted reply ends with %+v, want DONE with status 0", d)
	}
	ack := c.read()
	if len(ack.Payload) != 13 || lastDone(t, ack.Payload).Status != tds.DoneAttn {
		t.Fatalf("acknowledgement % x, want one DONE with DONE_ATTN", ack.Payload)
	}

	// The session goes on.
	c.send(tds.PacketSQLBatch, batchPayload("SELECT 7"))
	if d := lastDone(t, c.read().Payload); d.Status != tds.DoneCount || d.RowCount != 1 {
		t.Fatalf("SELECT 7 after attention: %+v", d)
	}
	_ = c.raw.Close()
	rec := f.waitOne(t, 1)
	if rec.Attentions != 1 || len(rec.Requests) != 2 || !rec.Requests[0].Canceled || rec.Requests[1].Canceled {
		t.Errorf("record: %d attentions, requests %+v", rec.Attentions, rec.Requests)
	}
}

// TestAttentionDuringWaitFor: WAITFOR returns early on attention.
func TestAttentionDuringWaitFor(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("WAITFOR DELAY '01:00:00'"))
	if _, err := f.srv.Wait(testContext(t), hasRequest("WAITFOR")); err != nil {
		t.Fatal(err)
	}
	c.send(tds.PacketAttention, nil)
	if d := lastDone(t, c.read().Payload); d.Status != tds.DoneFinal {
		t.Fatalf("WAITFOR reply ends with %+v", d)
	}
	if d := lastDone(t, c.read().Payload); d.Status != tds.DoneAttn {
		t.Fatalf("acknowledgement %+v", d)
	}
}

// TestWaitForCompletes: a short WAITFOR ends by itself with DONE.
func TestWaitForCompletes(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("waitfor delay '00:00:00.010';"))
	m := c.read()
	if len(m.Payload) != 13 || lastDone(t, m.Payload).Status != tds.DoneFinal {
		t.Fatalf("reply % x", m.Payload)
	}
}

// TestAttentionWhenIdle: an attention arriving after the reply is complete is
// still acknowledged (MS-TDS 3.3.5.7), and only once.
func TestAttentionWhenIdle(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("SELECT 1"))
	c.read()
	c.send(tds.PacketAttention, nil)
	if m := c.read(); len(m.Payload) != 13 || lastDone(t, m.Payload).Status != tds.DoneAttn {
		t.Fatalf("idle attention answered with % x", m.Payload)
	}
	c.send(tds.PacketSQLBatch, batchPayload("SELECT 2"))
	if d := lastDone(t, c.read().Payload); d.RowCount != 1 || d.Status != tds.DoneCount {
		t.Fatalf("SELECT 2: %+v", d)
	}
}

// TestIgnoreBit: a request ended with the ignore bit gets a lone DONE_ERROR
// (MS-TDS 2.2.1.7).
func TestIgnoreBit(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{})
	if err := c.w.WriteMessage(tds.Message{Type: tds.PacketSQLBatch, Status: tds.StatusIgnore, Payload: batchPayload("SELECT 1")}); err != nil {
		t.Fatal(err)
	}
	if m := c.read(); len(m.Payload) != 13 || lastDone(t, m.Payload).Status != tds.DoneError {
		t.Fatalf("ignored request answered with % x", m.Payload)
	}
}
