package tdstest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSQLBatchResponseGolden encodes the server response of MS-TDS 4.7
// (SQL Batch Server Response: one VARCHAR(3) column "bar", one row "foo")
// and compares it, packet header included, with the specification's bytes.
func TestSQLBatchResponseGolden(t *testing.T) {
	want := unhex(t, `
		04 01 00 33 00 00 01 00 81 01 00 00 00 00 00 20
		00 A7 03 00 09 04 D0 00 34 03 62 00 61 00 72 00
		D1 03 00 66 6F 6F FD 10 00 C1 00 01 00 00 00 00
		00 00 00`)
	var b []byte
	b = appendColMetadata(b, tds.TDS74, []column{{name: "bar", typ: typeBigVarChar, maxLen: 3, flags: 0x0020}})
	b = append(b, byte(tds.TokenRow))
	b = appendShortValue(b, []byte("foo"))
	b = selectDone(b, tds.TDS74, tds.Done{}, 1)

	var out bytes.Buffer
	if err := newReplyWriter(&out, tds.DefaultPacketSize, 0).message(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("got\n% X\nwant\n% X", out.Bytes(), want)
	}
}

// TestTokenWidthsPre72: TDS 7.1 has a USHORT UserType and a 4-byte DONE row
// count.
func TestTokenWidthsPre72(t *testing.T) {
	cm := appendColMetadata(nil, tds.TDS71, []column{{typ: typeInt4}})
	if want := unhex(t, "81 0100 0000 0000 38 00"); !bytes.Equal(cm, want) {
		t.Errorf("COLMETADATA % X, want % X", cm, want)
	}
	d := appendDone(nil, tds.TDS71, tds.Done{Status: tds.DoneCount, CurCmd: curCmdSelect, RowCount: 5})
	if want := unhex(t, "FD 1000 C100 05000000"); !bytes.Equal(d, want) {
		t.Errorf("DONE % X, want % X", d, want)
	}
	d = appendDone(nil, tds.TDS74, tds.Done{Token: tds.TokenDoneInProc, Status: tds.DoneMore | tds.DoneCount, CurCmd: curCmdSelect, RowCount: 5})
	if got, err := tds.ParseDone(d); err != nil || got.Token != tds.TokenDoneInProc || got.RowCount != 5 || got.Status != tds.DoneMore|tds.DoneCount {
		t.Errorf("DONEINPROC round trip: %+v %v", got, err)
	}
}

// TestReplyWriterPackets: the writer fills packets to the packet size,
// numbers them from 1, sets EOM on the last only, and restarts numbering
// for the next message.
func TestReplyWriterPackets(t *testing.T) {
	var out bytes.Buffer
	rw := newReplyWriter(&out, 512, 51)
	payload := bytes.Repeat([]byte{0xAB}, 1200) // 504 + 504 + 192
	if err := rw.message(payload); err != nil {
		t.Fatal(err)
	}
	if err := rw.message(nil); err != nil {
		t.Fatal(err)
	}
	r := tds.NewReader(&out)
	_ = r.SetMaxPacketSize(512)
	wantLen := []uint16{512, 512, 200, 8}
	wantID := []uint8{1, 2, 3, 1}
	for i := range wantLen {
		h, _, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		eom := i == 2 || i == 3
		if h.Type != tds.PacketReply || h.Length != wantLen[i] || h.PacketID != wantID[i] || h.EOM() != eom || h.SPID != 51 {
			t.Errorf("packet %d: %v", i, h)
		}
	}
}

// TestRowsPLP reads a tdstest.rows result with values over 8000 bytes with
// the raw client and decodes the MAX type and PLP chunks by hand.
func TestRowsPLP(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{PacketSize: 512})
	const n, m = 3, 20000
	c.send(tds.PacketSQLBatch, batchPayload("SELECT * FROM tdstest.rows(3, 20000)"))
	msg := c.read()
	r := reader{b: msg.Payload}
	// COLMETADATA: one nullable VARBINARY(MAX) column "data".
	if r.u8() != byte(tds.TokenColMetadata) || r.u16() != 1 || r.u32() != 0 || r.u16() != flagNullable ||
		r.u8() != typeBigVarBinary || r.u16() != plpMaxLen {
		t.Fatalf("COLMETADATA % X", msg.Payload[:min(len(msg.Payload), 20)])
	}
	if name, _ := decodeUCS2(r.take(2 * int(r.u8()))); name != "data" {
		t.Fatalf("column name %q", name)
	}
	for row := int64(0); row < n; row++ {
		if r.u8() != byte(tds.TokenRow) {
			t.Fatalf("row %d: no ROW token", row)
		}
		v := r.plp()
		if r.err != nil || !bytes.Equal(v, expectedValue(false, row, m)) {
			t.Fatalf("row %d: %d bytes, %v", row, len(v), r.err)
		}
	}
	d, err := tds.ParseDone(r.take(13))
	if err != nil || d.RowCount != n || r.left() != 0 {
		t.Fatalf("DONE %+v %v, %d bytes left", d, err, r.left())
	}
}

// TestSelectVersionToken checks the @@VERSION column: NVARCHAR(300) with
// the default collation.
func TestSelectVersionToken(t *testing.T) {
	f := newFixture(t, Config{Version: "v"})
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("select @@version"))
	want := unhex(t, "81 0100 00000000 0100 E7 5802 0904D00034 00 D1 0200 7600")
	want = appendDone(want, tds.TDS74, tds.Done{Status: tds.DoneCount, CurCmd: curCmdSelect, RowCount: 1})
	if got := c.read().Payload; !bytes.Equal(got, want) {
		t.Errorf("got  % X\nwant % X", got, want)
	}
}

func TestParsePLPUnknownLength(t *testing.T) {
	b := binary.LittleEndian.AppendUint64(nil, 0xFFFFFFFFFFFFFFFE)
	b = appendPLPChunk(b, []byte("ab"))
	b = appendPLPChunk(b, []byte("cde"))
	b = appendPLPChunk(b, nil)
	r := reader{b: b}
	if v := r.plp(); r.err != nil || string(v) != "abcde" || r.left() != 0 {
		t.Fatalf("%q %v", v, r.err)
	}
}
