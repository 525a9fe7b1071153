package tds

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz")

// seedCorpus returns the committed seeds per fuzz target: file name to the
// target's arguments. The spec fixtures are seeds too, added with f.Add.
func seedCorpus(tb testing.TB) map[string]map[string][]any {
	pkt := func(typ PacketType, st Status, payload []byte) []byte {
		return append(Header{Type: typ, Status: st, Length: uint16(HeaderLen + len(payload)), PacketID: 1}.AppendTo(nil), payload...)
	}
	login, err := (&Login7Builder{UserName: "sa", Password: "Passw0rd!", HostName: "ws", AppName: "app", Library: "go-mssqldb", Database: "master",
		Features: []FeatureExt{{ID: FeatureFedAuth, Data: []byte{0x02, 0, 0, 0, 0}}}}).Build()
	if err != nil {
		tb.Fatal(err)
	}
	login71, _ := (&Login7Builder{TDSVersion: TDS71, UserName: "sa", Password: "x", Library: "ODBC"}).Build()
	loginSSPI, _ := (&Login7Builder{HostName: "ws", SSPI: bytes.Repeat([]byte{0x4E}, 0x10010)}).Build()
	loginSplit, _ := AppendPackets(nil, Message{Type: PacketLogin7, Payload: login}, MinPacketSize)
	clientPrelogin, _ := (&Prelogin{Version: Version{Major: 1, Minor: 11}, Encryption: new(EncryptOff), InstOpt: InstanceOpt(""),
		ThreadID: new(uint32(42)), MARS: new(false), TraceID: &TraceID{ActivitySequence: 1}}).MarshalBinary()
	fedPrelogin, _ := (&Prelogin{Version: Version{Major: 9}, Encryption: new(EncryptOn), FedAuthRequired: new(true), Nonce: &[32]byte{1},
		Unknown: []PreloginOption{{Token: 0x08, Data: []byte("future")}}}).MarshalBinary()
	errReply, _ := ErrorReply(0, ErrorInfo{Number: 18456, State: 1, Class: 14, Message: "Login failed.", ServerName: "gw", LineNumber: 1})
	errReply71, _ := ErrorReply(TDS71, ErrorInfo{Number: 4060, Class: 11, Message: "Cannot open database."})
	var rb ReplyBuilder
	rb.LoginAck(LoginAck{Interface: 1, TDSVersion: TDS74, ProgName: "Microsoft SQL Server", ProgVersion: Version{Major: 16, Build: 4135}})
	rb.EnvPacketSize(8000, 4096)
	rb.EnvRouting(Routing{Port: 11000, Server: "replica"})
	rb.EnvRouting(Routing{Enhanced: true, Port: 1433, Server: "db2", Database: "sales"})
	rb.FeatureExtAck([]FeatureAck{{ID: FeatureUTF8Support, Data: []byte{1}}})
	rb.Done(Done{Status: DoneCount, RowCount: 1})
	loginReply, err := rb.Bytes()
	if err != nil {
		tb.Fatal(err)
	}

	return map[string]map[string][]any{
		"FuzzHeader": {
			"reply":            {[]byte{0x04, 0x01, 0x01, 0x61, 0x00, 0x00, 0x01, 0x00}},
			"max_length":       {[]byte{0x12, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
			"length_below_8":   {[]byte{0x10, 0x01, 0x00, 0x05, 0x00, 0x00, 0x01, 0x00}},
			"seven_bytes":      {[]byte{0x10, 0x01, 0x00, 0x08, 0x00, 0x00, 0x01}},
			"tls_client_hello": {[]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC}},
		},
		"FuzzReader": {
			"login7_split_512": {loginSplit},
			"attention":        {pkt(PacketAttention, StatusEOM, nil)},
			"two_messages":     {append(pkt(PacketPrelogin, StatusEOM, clientPrelogin), pkt(PacketReply, StatusEOM, errReply)...)},
			"mixed_types":      {append(pkt(PacketLogin7, 0, []byte("ab")), pkt(PacketSSPI, StatusEOM, []byte("cd"))...)},
			"no_eom":           {pkt(PacketLogin7, 0, []byte("abc"))},
			"too_large":        {append(Header{Type: PacketReply, Status: StatusEOM, Length: 0x8000}.AppendTo(nil), 0)},
			"truncated":        {pkt(PacketSQLBatch, StatusEOM, []byte("select 1"))[:12]},
		},
		"FuzzPrelogin": {
			"client_go_mssqldb":   {clientPrelogin},
			"client_fedauth":      {fedPrelogin},
			"no_terminator":       {[]byte{0x00, 0x00, 0x05, 0x00, 0x06, 1, 2, 3, 4, 5, 6}},
			"overlap":             {rawPrelogin([]opt{{0, 11, 6}, {1, 12, 1}}, true, 1, 2, 3, 4, 5, 6)},
			"duplicate":           {rawPrelogin([]opt{{0, 11, 6}, {0, 11, 6}}, true, 1, 2, 3, 4, 5, 6)},
			"zero_length_options": {rawPrelogin([]opt{{0, 16, 6}, {3, 0xFFFF, 0}, {5, 0, 0}}, true, 1, 2, 3, 4, 5, 6)},
			"tls_record":          {[]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03}},
		},
		"FuzzLogin7": {
			"sql_login_fedauth_feature": {login},
			"tds71":                     {login71},
			"sspi_long":                 {loginSSPI},
			"truncated":                 {login[:90]},
			"bad_extension":             {append(bytes.Clone(login[:len(login)-1]), 0x01)},
		},
		"FuzzTokens": {
			"login_reply_built": {loginReply, uint32(0)},
			"error_reply":       {errReply, uint32(TDS74)},
			"error_reply_71":    {errReply71, uint32(TDS71)},
			"featureextack_cut": {[]byte{0xAE, 0x01, 0x05, 0x00}, uint32(0)},
			"fedauthinfo":       {[]byte{0xEE, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, uint32(0)},
			"colmetadata":       {[]byte{0x81, 0x01, 0x00}, uint32(0)},
		},
		"FuzzErrorReply": {
			"login_failed":    {uint32(TDS74), int32(18456), byte(1), byte(14), "Login failed for user 'sa'.", "gateway", "", int32(1)},
			"encryption_tds7": {uint32(TDS71), int32(50000), byte(1), byte(20), "Encryption is required to connect to this gateway.", "gateway", "", int32(0)},
			"long_server":     {uint32(0), int32(1), byte(0), byte(0), "", strings.Repeat("s", 256), "", int32(0)},
		},
	}
}

// marshalCorpus renders args in the "go test fuzz v1" file format.
func marshalCorpus(args []any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case int32:
			fmt.Fprintf(&b, "int32(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		default:
			panic(fmt.Sprintf("corpus type %T", a))
		}
	}
	return []byte(b.String())
}

// TestSeedCorpus checks that testdata/fuzz holds the seeds above; run with
// -update-corpus to rewrite them after changing seedCorpus.
func TestSeedCorpus(t *testing.T) {
	for target, seeds := range seedCorpus(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range seeds {
			path := filepath.Join(dir, name)
			want := marshalCorpus(args)
			if *updateCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSeedCorpus -update-corpus)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (run go test -run TestSeedCorpus -update-corpus)", path)
			}
		}
	}
}
