package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePreloginSpecRequest(t *testing.T) {
	h, payload := payloadOf(t, fixture(t, "prelogin_request.hex")) // MS-TDS 4.1
	if h.Type != PacketPrelogin {
		t.Fatalf("type %v", h.Type)
	}
	p, err := ParsePrelogin(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := &Prelogin{
		Version:    Version{Major: 9},
		Encryption: new(EncryptOn),
		InstOpt:    []byte{0},
		ThreadID:   new(uint32(0x0DB8)),
		MARS:       new(true),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got  %v\nwant %v", p, want)
	}
	if p.Instance() != "" || p.InstanceMismatch() {
		t.Fatalf("instance %q mismatch %t", p.Instance(), p.InstanceMismatch())
	}
	// The example uses the canonical layout, so it re-encodes byte for byte.
	enc, err := p.MarshalBinary()
	if err != nil || !bytes.Equal(enc, payload) {
		t.Fatalf("re-encoded\n% X\nwant\n% X (%v)", enc, payload, err)
	}
}

// A reply as SQL Server sends it: THREADID and TRACEID present with length 0.
var serverPreloginReply = []byte{
	0x00, 0x00, 0x24, 0x00, 0x06, // VERSION @36 len 6
	0x01, 0x00, 0x2A, 0x00, 0x01, // ENCRYPTION @42
	0x02, 0x00, 0x2B, 0x00, 0x01, // INSTOPT @43
	0x03, 0x00, 0x2C, 0x00, 0x00, // THREADID @44 len 0
	0x04, 0x00, 0x2C, 0x00, 0x01, // MARS @44
	0x05, 0x00, 0x2D, 0x00, 0x00, // TRACEID @45 len 0
	0x06, 0x00, 0x2D, 0x00, 0x01, // FEDAUTHREQUIRED @45
	0xFF,
	0x0F, 0x00, 0x07, 0xD0, 0x00, 0x00, // 15.0.2000.0
	0x03, // REQ
	0x00, // instance matched
	0x00, // MARS off
	0x01, // FedAuth required
}

func TestParsePreloginServerReply(t *testing.T) {
	p, err := ParsePrelogin(serverPreloginReply)
	if err != nil {
		t.Fatal(err)
	}
	want := &Prelogin{
		Version:         Version{Major: 15, Build: 2000},
		Encryption:      new(EncryptReq),
		InstOpt:         []byte{0},
		MARS:            new(false),
		FedAuthRequired: new(true),
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got  %v\nwant %v", p, want)
	}
	if p.InstanceMismatch() {
		t.Fatal("mismatch")
	}
	if got := p.Version.String(); got != "15.0.2000.0" {
		t.Fatal(got)
	}
}

func TestPreloginRoundTrip(t *testing.T) {
	nonce := [32]byte{1, 2, 3, 31: 0xFF}
	tests := []struct {
		name string
		p    Prelogin
	}{
		{"version only", Prelogin{Version: Version{Major: 16, Minor: 1, Build: 4000, SubBuild: 7}}},
		{"go-mssqldb style client", Prelogin{
			Version:    Version{Major: 1, Minor: 11, Build: 2},
			Encryption: new(EncryptOff),
			InstOpt:    InstanceOpt("SQLEXPRESS"),
			ThreadID:   new(uint32(0xDEADBEEF)),
			MARS:       new(false),
			TraceID:    &TraceID{ConnID: [16]byte{1, 15: 2}, ActivityID: [16]byte{3, 15: 4}, ActivitySequence: 1},
		}},
		{"fedauth client", Prelogin{
			Version:         Version{Major: 9},
			Encryption:      new(EncryptOn | EncryptClientCert),
			FedAuthRequired: new(true),
			Nonce:           &nonce,
		}},
		{"server reply with mismatch", Prelogin{
			Version:    Version{Major: 16, Build: 1000},
			Encryption: new(EncryptNotSup),
			InstOpt:    []byte{1},
			MARS:       new(true),
		}},
		{"empty INSTOPT and unknown options", Prelogin{
			Version: Version{Major: 1},
			InstOpt: []byte{},
			Unknown: []PreloginOption{{Token: 0x08, Data: []byte("abc")}, {Token: 0x20, Data: []byte{}}, {Token: 0xFE, Data: []byte{9}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := tc.p.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePrelogin(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &tc.p) {
				t.Fatalf("got  %v\nwant %v", got, &tc.p)
			}
			again, err := got.AppendBinary([]byte("prefix"))
			if err != nil || !bytes.Equal(again[6:], enc) || string(again[:6]) != "prefix" {
				t.Fatalf("encoding is not canonical: % X vs % X", again, enc)
			}
		})
	}
}

func TestPreloginUnknownSortedAfterKnown(t *testing.T) {
	p := Prelogin{Unknown: []PreloginOption{{Token: 0x30, Data: []byte{3}}, {Token: 0x09, Data: []byte{9}}}, MARS: new(true)}
	enc, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var toks []byte
	for i := 0; enc[i] != 0xFF; i += 5 {
		toks = append(toks, enc[i])
	}
	if !bytes.Equal(toks, []byte{0x00, 0x04, 0x09, 0x30}) {
		t.Fatalf("token order % X", toks)
	}
}

func TestPreloginEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		p       Prelogin
		wantErr error
	}{
		{"unknown uses known token", Prelogin{Unknown: []PreloginOption{{Token: PreloginEncryption}}}, ErrDuplicateOption},
		{"unknown twice", Prelogin{Unknown: []PreloginOption{{Token: 0x10}, {Token: 0x10}}}, ErrDuplicateOption},
		{"unknown terminator", Prelogin{Unknown: []PreloginOption{{Token: PreloginTerminator}}}, ErrMalformed},
		{"data over 64 KiB", Prelogin{InstOpt: make([]byte, 0x10000)}, ErrFieldTooLong},
		{"offset over 64 KiB", Prelogin{InstOpt: make([]byte, 0xFFF0), Unknown: []PreloginOption{{Token: 0x08, Data: make([]byte, 100)}}}, ErrFieldTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.p.MarshalBinary(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// opt is one option table entry for rawPrelogin.
type opt struct {
	tok    byte
	off, n uint16
}

// rawPrelogin builds a PRELOGIN payload with an arbitrary table.
func rawPrelogin(entries []opt, terminate bool, data ...byte) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e.tok)
		b = binary.BigEndian.AppendUint16(b, e.off)
		b = binary.BigEndian.AppendUint16(b, e.n)
	}
	if terminate {
		b = append(b, 0xFF)
	}
	return append(b, data...)
}

func TestParsePreloginMalformed(t *testing.T) {
	v6 := []byte{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty", nil, ErrNoTerminator},
		{"terminator only", []byte{0xFF}, ErrMissingVersion},
		{"no terminator", rawPrelogin([]opt{{0, 5, 6}}, false, v6...), ErrNoTerminator},
		{"entry cut short", []byte{0x00, 0x00, 0x06, 0x00}, ErrNoTerminator},
		{"table runs into data without terminator", rawPrelogin([]opt{{0, 6, 6}}, false, 1), ErrNoTerminator},
		{"first option not VERSION", rawPrelogin([]opt{{1, 11, 1}, {0, 12, 6}}, true, append([]byte{0}, v6...)...), ErrMissingVersion},
		{"VERSION twice", rawPrelogin([]opt{{0, 11, 6}, {0, 11, 6}}, true, v6...), ErrDuplicateOption},
		{"unknown twice", rawPrelogin([]opt{{0, 16, 6}, {9, 22, 0}, {9, 22, 0}}, true, v6...), ErrDuplicateOption},
		{"offset past end", rawPrelogin([]opt{{0, 200, 6}}, true, v6...), ErrOutOfRange},
		{"length past end", rawPrelogin([]opt{{0, 6, 7}}, true, v6...), ErrOutOfRange},
		{"max offset and length", rawPrelogin([]opt{{0, 0xFFFF, 0xFFFF}}, true, v6...), ErrOutOfRange},
		{"data inside the table", rawPrelogin([]opt{{0, 0, 6}}, true, v6...), ErrOverlap},
		{"data over the terminator", rawPrelogin([]opt{{0, 5, 6}}, true, v6...), ErrOverlap},
		{"two options overlap", rawPrelogin([]opt{{0, 11, 6}, {1, 16, 1}}, true, v6...), ErrOverlap},
		{"unknown overlaps VERSION", rawPrelogin([]opt{{0, 11, 6}, {0x42, 11, 2}}, true, v6...), ErrOverlap},
		{"VERSION of 5 bytes", rawPrelogin([]opt{{0, 6, 5}}, true, v6...), ErrOptionSize},
		{"VERSION empty", rawPrelogin([]opt{{0, 6, 0}}, true), ErrOptionSize},
		{"ENCRYPTION of 2 bytes", rawPrelogin([]opt{{0, 11, 6}, {1, 17, 2}}, true, append(v6, 0, 0)...), ErrOptionSize},
		{"ENCRYPTION empty", rawPrelogin([]opt{{0, 11, 6}, {1, 17, 0}}, true, v6...), ErrOptionSize},
		{"THREADID of 3 bytes", rawPrelogin([]opt{{0, 11, 6}, {3, 17, 3}}, true, append(v6, 0, 0, 0)...), ErrOptionSize},
		{"MARS empty", rawPrelogin([]opt{{0, 11, 6}, {4, 17, 0}}, true, v6...), ErrOptionSize},
		{"TRACEID of 16 bytes", rawPrelogin([]opt{{0, 11, 6}, {5, 17, 16}}, true, append(v6, make([]byte, 16)...)...), ErrOptionSize},
		{"NONCE of 31 bytes", rawPrelogin([]opt{{0, 11, 6}, {7, 17, 31}}, true, append(v6, make([]byte, 31)...)...), ErrOptionSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePrelogin(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if p != nil {
				t.Fatal("non-nil result with an error")
			}
			if !strings.HasPrefix(err.Error(), "tds: prelogin: ") {
				t.Fatalf("error %q lacks context", err)
			}
		})
	}
}

func TestParsePreloginLenient(t *testing.T) {
	v6 := []byte{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name string
		in   []byte
	}{
		// Zero-length options: offsets are ignored, even past the end.
		{"zero-length THREADID anywhere", rawPrelogin([]opt{{0, 11, 6}, {3, 0xFFFF, 0}}, true, v6...)},
		// Gaps between data and trailing bytes are allowed.
		{"gap and trailing bytes", rawPrelogin([]opt{{0, 8, 6}}, true, append([]byte{0xEE, 0xEE}, append(v6, 0xEE)...)...)},
		// Data in reverse order of the table.
		{"data out of order", rawPrelogin([]opt{{0, 18, 6}, {1, 16, 1}, {4, 17, 1}}, true, append([]byte{2, 1}, v6...)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePrelogin(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != (Version{1, 2, 0x0304, 0x0506}) {
				t.Fatalf("version %v", p.Version)
			}
		})
	}
	p, _ := ParsePrelogin(tests[2].in)
	if *p.Encryption != EncryptNotSup || !*p.MARS {
		t.Fatalf("out-of-order data decoded as %v", p)
	}
}

func TestParsePreloginDoesNotAlias(t *testing.T) {
	in := rawPrelogin([]opt{{0, 16, 6}, {2, 22, 2}, {0x33, 24, 1}}, true, 1, 2, 3, 4, 5, 6, 'A', 0, 0x77)
	p, err := ParsePrelogin(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0
	}
	if p.Instance() != "A" || p.Unknown[0].Data[0] != 0x77 {
		t.Fatalf("result aliases its input: %v", p)
	}
}

func TestEncryption(t *testing.T) {
	tests := []struct {
		e    Encryption
		mode Encryption
		cert bool
		s    string
	}{
		{EncryptOff, EncryptOff, false, "OFF"},
		{EncryptOn, EncryptOn, false, "ON"},
		{EncryptNotSup, EncryptNotSup, false, "NOT_SUP"},
		{EncryptReq, EncryptReq, false, "REQ"},
		{EncryptOn | EncryptClientCert, EncryptOn, true, "ON|CLIENT_CERT"},
		{EncryptReq | 0x20, EncryptReq, false, "REQ|EXT"},
		{0x04, 0x04, false, "Encryption(0x04)"},
	}
	for _, tc := range tests {
		if tc.e.Mode() != tc.mode || tc.e.ClientCert() != tc.cert || tc.e.String() != tc.s {
			t.Errorf("0x%02X: mode %v cert %t string %q", uint8(tc.e), tc.e.Mode(), tc.e.ClientCert(), tc.e.String())
		}
	}
}

func TestPreloginStringHidesNonce(t *testing.T) {
	p := Prelogin{Nonce: &[32]byte{0xAB, 0xCD}, Encryption: new(EncryptOn), InstOpt: InstanceOpt("X")}
	s := p.String()
	if strings.Contains(s, "ab") || strings.Contains(s, "171") || !strings.Contains(s, "nonce=present") || !strings.Contains(s, "encryption=ON") {
		t.Fatal(s)
	}
}
