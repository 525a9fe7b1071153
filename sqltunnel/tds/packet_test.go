package tds

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadPacketSpecFixtures(t *testing.T) {
	tests := []struct {
		file string
		typ  PacketType
		n    int
	}{
		{"prelogin_request.hex", PacketPrelogin, 39},
		{"login7.hex", PacketLogin7, 136},
		{"login_response.hex", PacketReply, 345},
		{"attention.hex", PacketAttention, 0},
		{"sspi_message.hex", PacketSSPI, 86},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			pkt := fixture(t, tc.file)
			// One byte at a time: the Reader must not depend on read sizes.
			r := NewReader(iotest.OneByteReader(bytes.NewReader(pkt)))
			h, payload, err := r.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if h.Type != tc.typ || !h.EOM() || len(payload) != tc.n || !bytes.Equal(payload, pkt[HeaderLen:]) {
				t.Fatalf("got %v with %d bytes", h, len(payload))
			}
			if _, _, err := r.ReadPacket(); err != io.EOF {
				t.Fatalf("after the packet: %v, want io.EOF", err)
			}
		})
	}
}

func TestReadPacketErrors(t *testing.T) {
	big := Header{Type: PacketReply, Status: StatusEOM, Length: DefaultPacketSize + 1}.AppendTo(nil)
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty stream", nil, io.EOF},
		{"partial header", []byte{0x12, 0x01, 0x00}, io.ErrUnexpectedEOF},
		{"partial payload", []byte{0x12, 0x01, 0x00, 0x0A, 0, 0, 1, 0, 0xFF}, io.ErrUnexpectedEOF},
		{"header-only payload missing", []byte{0x12, 0x01, 0x00, 0x09, 0, 0, 1, 0}, io.ErrUnexpectedEOF},
		{"length below header", []byte{0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0}, ErrBadLength},
		{"larger than 4096 before login", append(big, make([]byte, DefaultPacketSize)...), ErrPacketTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewReader(bytes.NewReader(tc.in)).ReadPacket()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReaderMaxPacketSize(t *testing.T) {
	r := NewReader(nil)
	if r.MaxPacketSize() != DefaultPacketSize {
		t.Fatalf("default %d", r.MaxPacketSize())
	}
	for _, n := range []int{0, 511, 32768, -1} {
		if err := r.SetMaxPacketSize(n); !errors.Is(err, ErrInvalidPacketSize) {
			t.Errorf("SetMaxPacketSize(%d) = %v", n, err)
		}
	}
	if r.MaxPacketSize() != DefaultPacketSize {
		t.Fatal("a rejected size must not change the reader")
	}

	// After negotiating 32767 a packet of that size is accepted.
	m := Message{Type: PacketReply, Payload: bytes.Repeat([]byte{0xAB}, MaxPacketSize-HeaderLen)}
	wire, err := AppendPackets(nil, m, MaxPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	r = NewReader(bytes.NewReader(wire))
	if err := r.SetMaxPacketSize(MaxPacketSize); err != nil {
		t.Fatal(err)
	}
	h, payload, err := r.ReadPacket()
	if err != nil || h.Length != MaxPacketSize || len(payload) != MaxPacketSize-HeaderLen {
		t.Fatalf("%v %d %v", h, len(payload), err)
	}
}

func TestReadMessage(t *testing.T) {
	payload := make([]byte, 10000)
	for i := range payload {
		payload[i] = byte(i)
	}
	in := Message{Type: PacketLogin7, Status: StatusEOM, SPID: 7, Payload: payload}
	wire, err := AppendPackets(nil, in, MinPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	// A second message follows, to check that the first is not over-read.
	wire, _ = AppendPackets(wire, Message{Type: PacketAttention}, DefaultPacketSize)

	r := NewReader(iotest.HalfReader(bytes.NewReader(wire)))
	got, err := r.ReadMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != PacketLogin7 || got.SPID != 7 || got.Status != StatusEOM || !bytes.Equal(got.Payload, payload) {
		t.Fatalf("got %v status %v spid %d, %d bytes", got.Type, got.Status, got.SPID, len(got.Payload))
	}
	att, err := r.ReadMessage(got.Payload)
	if err != nil || att.Type != PacketAttention || len(att.Payload) != 0 {
		t.Fatalf("attention: %+v %v", att, err)
	}
	if &att.Payload[:1][0] != &got.Payload[0] {
		t.Fatal("ReadMessage must reuse dst")
	}
	if _, err := r.ReadMessage(nil); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestReadMessageStatusIsOred(t *testing.T) {
	var wire []byte
	wire = Header{Type: PacketSQLBatch, Status: StatusResetConnection, Length: HeaderLen + 1, PacketID: 1}.AppendTo(wire)
	wire = append(wire, 'a')
	wire = Header{Type: PacketSQLBatch, Status: StatusEOM | StatusIgnore, Length: HeaderLen + 1, PacketID: 2}.AppendTo(wire)
	wire = append(wire, 'b')
	m, err := NewReader(bytes.NewReader(wire)).ReadMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := StatusResetConnection | StatusEOM | StatusIgnore; m.Status != want || string(m.Payload) != "ab" {
		t.Fatalf("status %v payload %q", m.Status, m.Payload)
	}
}

func TestReadMessageErrors(t *testing.T) {
	pkt := func(typ PacketType, st Status, payload string) []byte {
		return append(Header{Type: typ, Status: st, Length: uint16(HeaderLen + len(payload))}.AppendTo(nil), payload...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
	}{
		{"type changes mid message", cat(pkt(PacketLogin7, 0, "ab"), pkt(PacketSSPI, StatusEOM, "cd")), 0, ErrMixedTypes},
		{"stream ends between packets", pkt(PacketLogin7, 0, "ab"), 0, io.ErrUnexpectedEOF},
		{"stream ends inside second packet", cat(pkt(PacketLogin7, 0, "ab"), pkt(PacketLogin7, StatusEOM, "cd")[:9]), 0, io.ErrUnexpectedEOF},
		{"over the cap in the first packet", pkt(PacketLogin7, StatusEOM, "abcdef"), 5, ErrMessageTooLarge},
		{"over the cap in a later packet", cat(pkt(PacketLogin7, 0, "abc"), pkt(PacketLogin7, StatusEOM, "def")), 5, ErrMessageTooLarge},
		{"bad packet inside", cat(pkt(PacketLogin7, 0, "abc"), []byte{0x10, 1, 0, 2, 0, 0, 0, 0}), 0, ErrBadLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tc.in))
			r.SetMaxMessageSize(tc.max)
			if _, err := r.ReadMessage(nil); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReaderMessageCapExact(t *testing.T) {
	m := Message{Type: PacketLogin7, Payload: bytes.Repeat([]byte("x"), 1000)}
	wire, _ := AppendPackets(nil, m, MinPacketSize)
	r := NewReader(bytes.NewReader(wire))
	r.SetMaxMessageSize(1000)
	if r.MaxMessageSize() != 1000 {
		t.Fatal(r.MaxMessageSize())
	}
	if got, err := r.ReadMessage(nil); err != nil || len(got.Payload) != 1000 {
		t.Fatalf("%d bytes, %v", len(got.Payload), err)
	}
	r.SetMaxMessageSize(0)
	if r.MaxMessageSize() != DefaultMaxMessageSize {
		t.Fatal("SetMaxMessageSize(0) must restore the default")
	}
}

func TestAppendPackets(t *testing.T) {
	tests := []struct {
		name     string
		m        Message
		size     int
		wantLens []int
		wantSt   []Status
	}{
		{"empty payload is one header-only packet", Message{Type: PacketAttention}, 4096, []int{8}, []Status{StatusEOM}},
		{"fits exactly", Message{Type: PacketSQLBatch, Payload: make([]byte, 504)}, 512, []int{512}, []Status{StatusEOM}},
		{"one byte over", Message{Type: PacketSQLBatch, Payload: make([]byte, 505)}, 512, []int{512, 9}, []Status{0, StatusEOM}},
		{
			"reset on first, ignore on last, EOM forced",
			Message{Type: PacketSQLBatch, Status: StatusResetConnection | StatusIgnore | 0x40, Payload: make([]byte, 1100)},
			512, []int{512, 512, 100},
			[]Status{StatusResetConnection | 0x40, 0x40, StatusIgnore | StatusEOM | 0x40},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire, err := AppendPackets(nil, tc.m, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for i := 0; len(wire) > 0; i++ {
				h, err := ParseHeader(wire)
				if err != nil {
					t.Fatal(err)
				}
				if i >= len(tc.wantLens) || int(h.Length) != tc.wantLens[i] || h.Status != tc.wantSt[i] ||
					h.PacketID != uint8(i+1) || h.Type != tc.m.Type || h.SPID != tc.m.SPID {
					t.Fatalf("packet %d: %v", i, h)
				}
				got = append(got, wire[HeaderLen:h.Length]...)
				wire = wire[h.Length:]
			}
			if !bytes.Equal(got, tc.m.Payload) && len(tc.m.Payload)+len(got) > 0 {
				t.Fatal("payload changed")
			}
		})
	}
	if _, err := AppendPackets(nil, Message{}, 511); !errors.Is(err, ErrInvalidPacketSize) {
		t.Fatalf("size 511: %v", err)
	}
}

func TestPacketIDWraps(t *testing.T) {
	m := Message{Type: PacketBulkLoad, Payload: make([]byte, 300*(MinPacketSize-HeaderLen))}
	wire, err := AppendPackets(nil, m, MinPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if id := wire[i*MinPacketSize+6]; id != uint8(i+1) {
			t.Fatalf("packet %d has id %d", i, id)
		}
	}
}

// writeRecorder records each Write call separately.
type writeRecorder struct{ writes [][]byte }

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func TestWriterOnePacketPerWrite(t *testing.T) {
	rec := &writeRecorder{}
	w := NewWriter(rec)
	if w.PacketSize() != DefaultPacketSize {
		t.Fatal(w.PacketSize())
	}
	if err := w.SetPacketSize(100); !errors.Is(err, ErrInvalidPacketSize) {
		t.Fatal(err)
	}
	if err := w.SetPacketSize(MinPacketSize); err != nil {
		t.Fatal(err)
	}
	m := Message{Type: PacketPrelogin, SPID: 3, Payload: bytes.Repeat([]byte{0x16}, 1200)}
	if err := w.WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	want, _ := AppendPackets(nil, m, MinPacketSize)
	if len(rec.writes) != 3 || !bytes.Equal(bytes.Join(rec.writes, nil), want) {
		t.Fatalf("%d writes", len(rec.writes))
	}
	for i, p := range rec.writes {
		if h, _ := ParseHeader(p); int(h.Length) != len(p) {
			t.Fatalf("write %d holds %d bytes for a %d-byte packet", i, len(p), h.Length)
		}
	}
	// Round trip through the Reader.
	r := NewReader(bytes.NewReader(want))
	got, err := r.ReadMessage(nil)
	if err != nil || !bytes.Equal(got.Payload, m.Payload) || got.SPID != 3 {
		t.Fatalf("%v %v", got.Type, err)
	}
}

func TestWriterError(t *testing.T) {
	boom := errors.New("boom")
	w := NewWriter(errWriter{boom})
	if err := w.WriteMessage(Message{Type: PacketReply}); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
