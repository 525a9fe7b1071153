package browser

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// What real clients send (seen on the wire): go-mssqldb CLNT_UCAST_EX,
// tedious and jTDS CLNT_BCAST_EX, FreeTDS CLNT_UCAST_INST with its NUL,
// go-mssqldb's DAC lookup CLNT_UCAST_DAC.
var clientRequests = map[string][]byte{
	"go_mssqldb":     {0x03},
	"tedious_jtds":   {0x02},
	"freetds":        append([]byte{0x04}, "SQLEXPRESS\x00"...),
	"go_mssqldb_dac": append([]byte{0x0F, 0x01}, "SQLEXPRESS\x00"...),
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Request
		err  bool
	}{
		{"ucast_ex", clientRequests["go_mssqldb"], Request{Type: TypeUnicast}, false},
		{"bcast_ex", clientRequests["tedious_jtds"], Request{Type: TypeBroadcast}, false},
		{"ucast_inst", clientRequests["freetds"], Request{Type: TypeInstance, Instance: "SQLEXPRESS"}, false},
		{"ucast_inst_no_nul", []byte("\x04sqlexpress"), Request{Type: TypeInstance, Instance: "sqlexpress"}, false},
		{"ucast_inst_padded", []byte("\x04ABC\x00\x00\x00"), Request{Type: TypeInstance, Instance: "ABC"}, false},
		{"ucast_inst_32", append([]byte{4}, strings.Repeat("A", 32)...), Request{Type: TypeInstance, Instance: strings.Repeat("A", 32)}, false},
		{"dac", clientRequests["go_mssqldb_dac"], Request{Type: TypeDAC, Instance: "SQLEXPRESS"}, false},
		{"empty", nil, Request{}, true},
		{"ucast_ex_trailing", []byte{0x03, 0x00}, Request{}, true},
		{"ucast_inst_empty", []byte{0x04}, Request{}, true},
		{"ucast_inst_only_nul", []byte{0x04, 0x00}, Request{}, true},
		{"ucast_inst_33", append([]byte{4}, strings.Repeat("A", 33)...), Request{}, true},
		{"ucast_inst_after_nul", []byte("\x04ABC\x00D"), Request{}, true},
		{"ucast_inst_semicolon", []byte("\x04A;B"), Request{}, true},
		{"dac_no_version", []byte{0x0F}, Request{}, true},
		{"dac_version_2", []byte("\x0F\x02A\x00"), Request{}, true},
		{"response", []byte{0x05, 0x00, 0x00}, Request{}, true},
		{"unknown_type", []byte{0x01}, Request{}, true},
		{"too_long", append([]byte{4}, make([]byte, 64)...), Request{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.in)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseRequest(% X) = %+v, %v; want ErrMalformed", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRequest(% X) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{Type: TypeBroadcast}, {Type: TypeUnicast},
		{Type: TypeInstance, Instance: "SQLEXPRESS"}, {Type: TypeInstance, Instance: strings.Repeat("x", 32)},
		{Type: TypeDAC, Instance: "MSSQLSERVER"},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		got, err := ParseRequest(b)
		if err != nil || got != r {
			t.Errorf("%+v -> % X -> %+v, %v", r, b, got, err)
		}
	}
	if b, _ := (Request{Type: TypeInstance, Instance: "SQLEXPRESS"}).MarshalBinary(); !bytes.Equal(b, clientRequests["freetds"]) {
		t.Errorf("CLNT_UCAST_INST is % X, want what FreeTDS sends: % X", b, clientRequests["freetds"])
	}
	for _, r := range []Request{
		{Type: TypeBroadcast, Instance: "X"}, {Type: TypeInstance}, {Type: TypeInstance, Instance: "a\x00b"},
		{Type: TypeInstance, Instance: strings.Repeat("x", 33)}, {Type: TypeResponse}, {Type: 0x42},
	} {
		if b, err := r.MarshalBinary(); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%+v marshalled to % X, %v; want ErrInvalidValue", r, b, err)
		}
	}
}

func TestResponseFraming(t *testing.T) {
	data := []byte("ServerName;DB01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0.1000.6;tcp;50123;;")
	b, err := AppendResponse(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(data)+3 || b[0] != 0x05 || int(b[1])|int(b[2])<<8 != len(data) {
		t.Fatalf("SVR_RESP header % X for %d bytes of data", b[:3], len(data))
	}
	got, err := ParseResponse(b)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ParseResponse = %q, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"short":      {0x05, 0x01},
		"not_resp":   append([]byte{0x04, byte(len(data)), 0}, data...),
		"size_over":  append([]byte{0x05, byte(len(data) + 1), 0}, data...),
		"size_under": append([]byte{0x05, byte(len(data) - 1), 0}, data...),
	} {
		if _, err := ParseResponse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseResponse = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := AppendResponse(nil, make([]byte, 0x10000)); !errors.Is(err, ErrTooLong) {
		t.Errorf("65536 bytes of data: %v, want ErrTooLong", err)
	}
	if b, err := AppendResponse(nil, nil); err != nil || !bytes.Equal(b, []byte{5, 0, 0}) {
		t.Errorf("empty response % X, %v", b, err)
	}
}

// specStyleList is a CLNT_UCAST_EX answer in the form of MC-SQLR section 4:
// three instances, one with named pipes only, one with a Banyan VINES entry
// (three values) and one with a protocol the codec does not know.
const specStyleList = "ServerName;ILSUNG1;InstanceName;YUKONSTD;IsClustered;No;Version;9.00.1399.06;tcp;57137;np;\\\\ILSUNG1\\pipe\\MSSQL$YUKONSTD\\sql\\query;;" +
	"ServerName;ILSUNG1;InstanceName;YUKONDEV;IsClustered;No;Version;9.00.1399.06;np;\\\\ILSUNG1\\pipe\\MSSQL$YUKONDEV\\sql\\query;;" +
	"ServerName;ILSUNG1;InstanceName;MSSQLSERVER;IsClustered;Yes;Version;9.00.1399.06;bv;item;group;org;via;ILSUNG1,0:1433;tcp;1433;;"

func TestParseInstances(t *testing.T) {
	got, err := ParseInstances([]byte(specStyleList))
	if err != nil {
		t.Fatal(err)
	}
	want := []InstanceInfo{
		{ServerName: "ILSUNG1", InstanceName: "YUKONSTD", Version: "9.00.1399.06", TCPPort: 57137, Pipe: `\\ILSUNG1\pipe\MSSQL$YUKONSTD\sql\query`},
		{ServerName: "ILSUNG1", InstanceName: "YUKONDEV", Version: "9.00.1399.06", Pipe: `\\ILSUNG1\pipe\MSSQL$YUKONDEV\sql\query`},
		{ServerName: "ILSUNG1", InstanceName: "MSSQLSERVER", IsClustered: true, Version: "9.00.1399.06", TCPPort: 1433},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseInstances:\n got %+v\nwant %+v", got, want)
	}
	if got, err := ParseInstances(nil); err != nil || got != nil {
		t.Errorf("empty data: %+v, %v", got, err)
	}

	bad := map[string]string{
		"no_terminator":      "ServerName;A;InstanceName;B;IsClustered;No;Version;1.0;tcp;1433",
		"single_semicolon":   "ServerName;A;InstanceName;B;IsClustered;No;Version;1.0;tcp;1433;",
		"no_server_name":     "InstanceName;B;IsClustered;No;Version;1.0;tcp;1433;;",
		"empty_first_key":    ";;",
		"port_zero":          "ServerName;A;InstanceName;B;IsClustered;No;Version;1.0;tcp;0;;",
		"port_big":           "ServerName;A;InstanceName;B;IsClustered;No;Version;1.0;tcp;65536;;",
		"port_text":          "ServerName;A;InstanceName;B;IsClustered;No;Version;1.0;tcp;sql;;",
		"clustered_maybe":    "ServerName;A;InstanceName;B;IsClustered;Maybe;Version;1.0;;",
		"nul":                "ServerName;A\x00;InstanceName;B;;",
		"bv_short":           "ServerName;A;bv;item;;",
		"junk_after":         "ServerName;A;InstanceName;B;;junk;",
		"second_unfinished":  "ServerName;A;InstanceName;B;;ServerName;C;",
		"value_missing_last": "ServerName;;",
	}
	for name, data := range bad {
		if got, err := ParseInstances([]byte(data)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseInstances(%q) = %+v, %v; want ErrMalformed", name, data, got, err)
		}
	}
}

func TestAppendInstance(t *testing.T) {
	in := InstanceInfo{ServerName: "GW01", InstanceName: "SQLEXPRESS", Version: "16.0.1000.6", TCPPort: 50123}
	b, err := AppendInstance(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	const want = "ServerName;GW01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0.1000.6;tcp;50123;;"
	if string(b) != want {
		t.Fatalf("AppendInstance = %q, want %q", b, want)
	}
	// Several instances concatenate; each round-trips.
	list := []InstanceInfo{in,
		{ServerName: "GW01", InstanceName: "REPORTS", IsClustered: true, Version: "15.0", TCPPort: 1,
			Pipe: `\\GW01\pipe\MSSQL$REPORTS\sql\query`},
		{ServerName: "GW01", InstanceName: "PIPES", Version: "1"},
	}
	var all []byte
	for _, x := range list {
		if all, err = AppendInstance(all, x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ParseInstances(all)
	if err != nil || !reflect.DeepEqual(got, list) {
		t.Fatalf("round trip of %q:\n got %+v, %v\nwant %+v", all, got, err, list)
	}

	for name, bad := range map[string]InstanceInfo{
		"empty_server":    {InstanceName: "A", Version: "1"},
		"semicolon_name":  {ServerName: "S", InstanceName: "A;B", Version: "1"},
		"nul_server":      {ServerName: "S\x00", InstanceName: "A", Version: "1"},
		"version_letters": {ServerName: "S", InstanceName: "A", Version: "16.0-rtm"},
		"version_long":    {ServerName: "S", InstanceName: "A", Version: "16.0.1000.6.12345"},
		"port_negative":   {ServerName: "S", InstanceName: "A", Version: "1", TCPPort: -1},
		"port_big":        {ServerName: "S", InstanceName: "A", Version: "1", TCPPort: 65536},
		"pipe_semicolon":  {ServerName: "S", InstanceName: "A", Version: "1", Pipe: "a;b"},
	} {
		if b, err := AppendInstance(nil, bad); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s: AppendInstance = %q, %v; want ErrInvalidValue", name, b, err)
		}
	}
	if _, err := AppendInstance(nil, InstanceInfo{ServerName: strings.Repeat("S", 256), InstanceName: "A", Version: "1"}); !errors.Is(err, ErrTooLong) {
		t.Errorf("256-byte server name: %v, want ErrTooLong", err)
	}
}

func TestMessageTypeString(t *testing.T) {
	for typ, want := range map[MessageType]string{
		TypeBroadcast: "clnt_bcast_ex", TypeUnicast: "clnt_ucast_ex", TypeInstance: "clnt_ucast_inst",
		TypeDAC: "clnt_ucast_dac", TypeResponse: "svr_resp", 0: "other", 0x42: "other",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%#x: %q, want %q", byte(typ), got, want)
		}
	}
}
