package tds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseLogin7SpecFixtures(t *testing.T) {
	tests := []struct {
		file string
		want Login7
		auth AuthMethod
	}{
		{
			file: "login7.hex", // MS-TDS 4.2
			want: Login7{
				Length: 136, TDSVersion: TDS72, PacketSize: 4096, ClientProgVer: 0x07000000, ClientPID: 256,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, ClientLCID: 0x409,
				HostName: "skostov1", UserName: "sa", AppName: "OSQL-32", Library: "ODBC",
				ClientID: [6]byte{0x00, 0x50, 0x8B, 0xE2, 0xB7, 0x8F},
			},
			auth: AuthSQL,
		},
		{
			file: "login7_fedauth.hex", // MS-TDS 4.3
			want: Login7{
				Length: 2056, TDSVersion: TDS74, PacketSize: 4096, ClientProgVer: 0x07000000, ClientPID: 14144,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, OptionFlags3: 0x10, ClientLCID: 0x409,
				HostName: "DANBENED3-XGZUO", AppName: "SQLCMD", ServerName: "cloud.dev.mscds.com,1435", Library: "ODBC",
				ClientID: [6]byte{0x00, 0x15, 0x5D, 0x71, 0xE7, 0x42},
				Features: []FeatureID{FeatureFedAuth},
			},
			auth: AuthFedAuth,
		},
		{
			file: "login7_sessionrecovery.hex", // MS-TDS 4.16
			want: Login7{
				Length: 261, TDSVersion: TDS74, PacketSize: 4096, ClientProgVer: 0x07000000, ClientPID: 256,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, OptionFlags3: 0x10, ClientLCID: 0x409,
				UserName: "sa", AppName: "OSQL-32", Library: "ODBC", Database: "tempdb",
				ClientID:    [6]byte{0x00, 0x50, 0x8B, 0xE2, 0xB7, 0x8F},
				HasPassword: true,
				Features:    []FeatureID{FeatureSessionRecovery},
			},
			auth: AuthSQL,
		},
		{
			file: "login7_azuresqlsupport.hex", // MS-TDS 4.20
			want: Login7{
				Length: 447, TDSVersion: TDS74, PacketSize: 8000, ClientProgVer: 0x06000000, ClientPID: 7574,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, TypeFlags: 0x20, OptionFlags3: 0x10,
				HostName: "ZLIN6CLIENT2", UserName: "cloudsa", AppName: ".Net SqlClient Data Provider",
				ServerName: "e2f8876ad658.local.onebox.control.zlinheka6dev4.onebox.xdb.mscds.com,37008",
				Library:    ".Net SqlClient Data Provider", Database: "testdb",
				ClientID:    [6]byte{0xC2, 0xCC, 0x3D, 0x20, 0xB7, 0xAB},
				HasPassword: true,
				Features:    []FeatureID{FeatureSessionRecovery, FeatureColumnEncryption, FeatureGlobalTransactions, FeatureAzureSQLSupport},
			},
			auth: AuthSQL,
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			h, payload := payloadOf(t, fixture(t, tc.file))
			if h.Type != PacketLogin7 {
				t.Fatalf("type %v", h.Type)
			}
			l, err := ParseLogin7(payload)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*l, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *l, tc.want)
			}
			if l.Auth() != tc.auth {
				t.Fatalf("auth %v, want %v", l.Auth(), tc.auth)
			}
		})
	}
}

func TestLogin7Flags(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "login7_azuresqlsupport.hex"))
	l, err := ParseLogin7(payload)
	if err != nil {
		t.Fatal(err)
	}
	if !l.ReadOnlyIntent() || l.IntegratedSecurity() || !l.HasFeatureExt() || !l.HasFeature(FeatureAzureSQLSupport) || l.HasFeature(FeatureFedAuth) {
		t.Fatalf("flags: %v", l)
	}
}

func TestLogin7BuildRoundTrip(t *testing.T) {
	longHost := strings.Repeat("h", 300)
	tests := []struct {
		name string
		b    Login7Builder
		want Login7
	}{
		{
			name: "zero value",
			want: Login7{TDSVersion: TDS74, PacketSize: DefaultPacketSize},
		},
		{
			name: "sql login with everything",
			b: Login7Builder{
				TDSVersion: TDS74, PacketSize: 8192, ClientProgVer: 1, ClientPID: 2, ConnectionID: 3,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, TypeFlags: TypeFlagsReadOnlyIntent, ClientTimeZone: -60, ClientLCID: 0x409,
				HostName: longHost, UserName: "app_user", Password: "s3cr3t-Pässwörd-😀", AppName: "gateway-test",
				ServerName: `db.example.com\SQLEXPRESS`, Library: "go-mssqldb", Language: "us_english", Database: "Kundenverwaltung",
				AttachDBFile: `C:\data\x.mdf`, ChangePassword: "n3w", ClientID: [6]byte{1, 2, 3, 4, 5, 6},
				Features: []FeatureExt{{ID: FeatureUTF8Support}, {ID: FeatureColumnEncryption, Data: []byte{1}}},
			},
			want: Login7{
				TDSVersion: TDS74, PacketSize: 8192, ClientProgVer: 1, ClientPID: 2, ConnectionID: 3,
				OptionFlags1: 0xE0, OptionFlags2: 0x03, TypeFlags: TypeFlagsReadOnlyIntent,
				OptionFlags3:   OptionFlags3ChangePassword | OptionFlags3Extension,
				ClientTimeZone: -60, ClientLCID: 0x409,
				HostName: longHost, UserName: "app_user", AppName: "gateway-test",
				ServerName: `db.example.com\SQLEXPRESS`, Library: "go-mssqldb", Language: "us_english", Database: "Kundenverwaltung",
				AttachDBFile: `C:\data\x.mdf`, ClientID: [6]byte{1, 2, 3, 4, 5, 6},
				HasPassword: true, HasChangePassword: true,
				Features: []FeatureID{FeatureUTF8Support, FeatureColumnEncryption},
			},
		},
		{
			name: "integrated with a long SSPI blob",
			b:    Login7Builder{HostName: "WS01", Library: "ODBC", SSPI: bytes.Repeat([]byte{0x60}, 70000)},
			want: Login7{
				TDSVersion: TDS74, PacketSize: DefaultPacketSize, OptionFlags2: OptionFlags2IntegratedSecurity,
				HostName: "WS01", Library: "ODBC", HasSSPI: true, SSPILen: 70000,
			},
		},
		{
			name: "integrated with a short SSPI blob",
			b:    Login7Builder{SSPI: []byte("NTLMSSP\x00\x01")},
			want: Login7{TDSVersion: TDS74, PacketSize: DefaultPacketSize, OptionFlags2: OptionFlags2IntegratedSecurity, HasSSPI: true, SSPILen: 9},
		},
		{
			name: "TDS 7.1 legacy layout",
			b:    Login7Builder{TDSVersion: TDS71A, UserName: "sa", Password: "pw", HostName: "OLDBOX", Library: "ODBC"},
			want: Login7{TDSVersion: TDS71A, PacketSize: DefaultPacketSize, UserName: "sa", HostName: "OLDBOX", Library: "ODBC", HasPassword: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := tc.b.Build()
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Length = uint32(len(enc))
			l, err := ParseLogin7(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*l, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *l, tc.want)
			}
			pw, err := DecodePasswordForServerSide(enc)
			if err != nil || pw != tc.b.Password {
				t.Fatalf("password round trip failed (%v)", err)
			}
			// The same login split over 512-byte packets reassembles.
			wire, _ := AppendPackets(nil, Message{Type: PacketLogin7, Payload: enc}, MinPacketSize)
			r := NewReader(bytes.NewReader(wire))
			m, err := r.ReadMessage(nil)
			if err != nil || !bytes.Equal(m.Payload, enc) {
				t.Fatalf("reassembly: %v", err)
			}
		})
	}
}

func TestLogin7Layout71(t *testing.T) {
	enc, err := (&Login7Builder{TDSVersion: TDS71, HostName: "h"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint16(enc[offHostName:]); got != login7FixedLen71 || len(enc) != login7FixedLen71+2 {
		t.Fatalf("7.1 variable data at %d, %d bytes", got, len(enc))
	}
	for _, b := range []Login7Builder{
		{TDSVersion: TDS71, ChangePassword: "x"},
		{TDSVersion: TDS70, Features: []FeatureExt{{ID: FeatureUTF8Support}}},
		{TDSVersion: TDS71, SSPI: make([]byte, 0xFFFF)},
	} {
		if _, err := b.Build(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: err = %v", b, err)
		}
	}
}

// The obfuscation vector: "a" (0x61 0x00) swaps to 0x16 0x00, then XORs with
// 0xA5 to 0xB3 0xA5 (MS-TDS 2.2.6.4).
func TestPasswordObfuscation(t *testing.T) {
	enc, err := (&Login7Builder{Password: "a"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	off := binary.LittleEndian.Uint16(enc[offPassword:])
	if got := enc[off : off+2]; !bytes.Equal(got, []byte{0xB3, 0xA5}) {
		t.Fatalf("obfuscated 'a' = % X", got)
	}
	for c := range 256 {
		b := []byte{byte(c)}
		if deobfuscatePassword(obfuscatePassword(b))[0] != byte(c) {
			t.Fatalf("byte 0x%02X does not round trip", c)
		}
	}
}

func TestDecodePasswordForServerSideSpec(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "login7.hex")) // "sa" with no password
	pw, err := DecodePasswordForServerSide(payload)
	if err != nil || pw != "" {
		t.Fatalf("%q %v", pw, err)
	}
	if _, err := DecodePasswordForServerSide(payload[:50]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestLogin7NeverShowsSecrets(t *testing.T) {
	const secret = "Hunter2-secret"
	b := Login7Builder{UserName: "u", Password: secret, ChangePassword: secret + "new", SSPI: []byte(secret), Features: []FeatureExt{{ID: FeatureFedAuth, Data: []byte(secret)}}}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		if s := fmt.Sprintf(verb, b); strings.Contains(s, secret) || strings.Contains(s, "48756e746572") {
			t.Errorf("%s prints the secret: %s", verb, s)
		}
		if s := fmt.Sprintf(verb, &b); strings.Contains(s, secret) {
			t.Errorf("%s of a pointer prints the secret: %s", verb, s)
		}
	}
	enc, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseLogin7(enc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{l.String(), fmt.Sprintf("%+v", *l), fmt.Sprintf("%#v", l)} {
		if strings.Contains(s, secret) {
			t.Fatalf("Login7 shows a secret: %s", s)
		}
	}
	if !l.HasPassword || !l.HasChangePassword || !l.HasSSPI || l.Auth() != AuthFedAuth {
		t.Fatalf("flags lost: %v", l)
	}
	if !strings.Contains(l.String(), `user="u"`) || !strings.Contains(l.String(), "auth=fedauth") {
		t.Fatal(l.String())
	}
}

// login7With returns the MS-TDS 4.2 example LOGIN7 payload with edit applied.
func login7With(t *testing.T, edit func(b []byte) []byte) []byte {
	_, payload := payloadOf(t, fixture(t, "login7.hex"))
	return edit(bytes.Clone(payload))
}

func put16(b []byte, off int, v uint16) []byte { binary.LittleEndian.PutUint16(b[off:], v); return b }
func put32(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }

func TestParseLogin7Malformed(t *testing.T) {
	tests := []struct {
		name    string
		edit    func([]byte) []byte
		wantErr error
	}{
		{"empty", func([]byte) []byte { return nil }, ErrTruncated},
		{"shorter than the fixed part", func(b []byte) []byte { return b[:85] }, ErrTruncated},
		{"length field beyond the message", func(b []byte) []byte { return put32(b, 0, 137) }, ErrTruncated},
		{"length field huge", func(b []byte) []byte { return put32(b, 0, 0xFFFFFFFF) }, ErrTruncated},
		{"length field below the 7.2 fixed part", func(b []byte) []byte { return put32(b, 0, 90) }, ErrTruncated},
		{"message cut after the fixed part", func(b []byte) []byte { return put32(b, 0, 94)[:94] }, ErrOutOfRange},
		{"host name past the end", func(b []byte) []byte { return put16(b, offHostName+2, 30) }, ErrOutOfRange},
		{"host name offset inside the fixed part", func(b []byte) []byte { return put16(b, offHostName, 10) }, ErrOutOfRange},
		{"host name offset 0xFFFF", func(b []byte) []byte { return put16(b, offHostName, 0xFFFF) }, ErrOutOfRange},
		{"user count 0xFFFF", func(b []byte) []byte { return put16(b, offUserName+2, 0xFFFF) }, ErrOutOfRange},
		{"password past the end", func(b []byte) []byte { return put16(b, offPassword+2, 20) }, ErrOutOfRange},
		{"change password past the end", func(b []byte) []byte { return put16(put16(b, offChangePass, 130), offChangePass+2, 4) }, ErrOutOfRange},
		{"SSPI past the end", func(b []byte) []byte { return put16(put16(b, offSSPI, 130), offSSPI+2, 7) }, ErrOutOfRange},
		{"SSPI long past the end", func(b []byte) []byte {
			return put32(put16(put16(b, offSSPI, 100), offSSPI+2, 0xFFFF), offSSPILong, 0xFFFFFFFF)
		}, ErrOutOfRange},
		{"extension flag without extension", func(b []byte) []byte { b[27] |= OptionFlags3Extension; return b }, ErrMalformed},
		{"FeatureExt offset past the end", func(b []byte) []byte { return login7Ext(b, 500, nil) }, ErrOutOfRange},
		{"FeatureExt offset in the fixed part", func(b []byte) []byte { return login7Ext(b, 4, nil) }, ErrOutOfRange},
		{"FeatureExt without terminator", func(b []byte) []byte { return login7Ext(b, 0, []byte{0x01, 0, 0, 0, 0}) }, ErrNoTerminator},
		{"FeatureExt data past the end", func(b []byte) []byte { return login7Ext(b, 0, []byte{0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}) }, ErrOutOfRange},
		{"FeatureExt length cut", func(b []byte) []byte { return login7Ext(b, 0, []byte{0x02, 0xFF}) }, ErrOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseLogin7(login7With(t, tc.edit))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if l != nil {
				t.Fatal("result with an error")
			}
		})
	}
}

// login7Ext appends an Extension DWORD and feature bytes to a LOGIN7
// payload and points ibExtension at them; at 0 means "the feature bytes".
func login7Ext(b []byte, at uint32, features []byte) []byte {
	ext := len(b)
	if at == 0 {
		at = uint32(ext + 4)
	}
	b = binary.LittleEndian.AppendUint32(b, at)
	b = append(b, features...)
	b[27] |= OptionFlags3Extension
	put16(b, offExtension, uint16(ext))
	put16(b, offExtension+2, 4)
	return put32(b, 0, uint32(len(b)))
}

func TestParseLogin7Lenient(t *testing.T) {
	// Offsets of empty fields are ignored (the 4.3 example has ibUserName
	// 0) and bytes after Length are ignored.
	b := login7With(t, func(b []byte) []byte { return append(put16(b, offLanguage, 0xFFFF), 0xEE, 0xEE) })
	if _, err := ParseLogin7(b); err != nil {
		t.Fatal(err)
	}
	b = login7With(t, func(b []byte) []byte { return login7Ext(b, 0, []byte{0xFF}) })
	if l, err := ParseLogin7(b); err != nil || l.Features == nil || len(l.Features) != 0 {
		t.Fatalf("empty FeatureExt: %v %v", l, err)
	}
	b = login7With(t, func(b []byte) []byte { return login7Ext(b, 0xFFFFFFFF, nil) })
	b = put32(b, len(b)-4, 0) // ibFeatureExtLong 0: no block
	if l, err := ParseLogin7(b); err != nil || l.Features != nil {
		t.Fatalf("no FeatureExt block: %v %v", l, err)
	}
}
