package tds

import (
	"errors"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantErr error
	}{
		{
			name: "prelogin from MS-TDS 4.1",
			in:   []byte{0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01, 0x00},
			want: Header{Type: PacketPrelogin, Status: StatusEOM, Length: 47, PacketID: 1},
		},
		{
			name: "big-endian length and spid",
			in:   []byte{0x04, 0x00, 0x10, 0x00, 0x01, 0x4A, 0xFF, 0x07, 0xEE},
			want: Header{Type: PacketReply, Length: 4096, SPID: 0x014A, PacketID: 255, Window: 7},
		},
		{name: "header only", in: []byte{0x06, 0x01, 0x00, 0x08, 0, 0, 1, 0}, want: Header{Type: PacketAttention, Status: StatusEOM, Length: 8, PacketID: 1}},
		{name: "empty", in: nil, wantErr: ErrShortHeader},
		{name: "seven bytes", in: []byte{0x12, 0x01, 0x00, 0x2F, 0x00, 0x00, 0x01}, wantErr: ErrShortHeader},
		{name: "length below header", in: []byte{0x12, 0x01, 0x00, 0x07, 0, 0, 1, 0}, wantErr: ErrBadLength},
		{name: "length zero", in: []byte{0x12, 0x01, 0x00, 0x00, 0, 0, 1, 0}, wantErr: ErrBadLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHeader(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{},
		{Type: PacketLogin7, Status: StatusEOM, Length: HeaderLen, SPID: 0, PacketID: 1},
		{Type: PacketSQLBatch, Status: StatusEOM | StatusResetConnection, Length: 32767, SPID: 0xFFFF, PacketID: 0xFF, Window: 0xFF},
	} {
		b := h.AppendTo([]byte{0xEE})
		if len(b) != 1+HeaderLen || b[0] != 0xEE {
			t.Fatalf("AppendTo(%v) = % X", h, b)
		}
		if h.Length < HeaderLen {
			continue
		}
		got, err := ParseHeader(b[1:])
		if err != nil || got != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
		var put [HeaderLen]byte
		putHeader(put[:], h)
		if string(put[:]) != string(b[1:]) {
			t.Fatalf("putHeader % X, AppendTo % X", put, b[1:])
		}
	}
}

func TestHeaderHelpers(t *testing.T) {
	h := Header{Status: StatusEOM | StatusIgnore, Length: 20}
	if !h.EOM() || h.PayloadLen() != 12 {
		t.Fatalf("EOM %t PayloadLen %d", h.EOM(), h.PayloadLen())
	}
	if (Header{Length: 3}).PayloadLen() != 0 {
		t.Fatal("PayloadLen of a bad header must be 0")
	}
	for _, pt := range []PacketType{PacketSQLBatch, PacketRPC, PacketReply, PacketAttention, PacketBulkLoad,
		PacketFedAuthToken, PacketTransMgr, PacketLogin7, PacketSSPI, PacketPrelogin} {
		if !pt.Known() || pt.String() == "" {
			t.Fatalf("%d: Known %t String %q", pt, pt.Known(), pt.String())
		}
	}
	if PacketType(0x02).Known() || PacketType(0x02).String() != "PacketType(0x02)" {
		t.Fatal("pre-TDS7 login type 0x02 must be unknown")
	}
}
