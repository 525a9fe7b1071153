package tds

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// scanAll returns the tokens of stream, failing the test on a scan error.
func scanAll(t *testing.T, stream []byte, ver TDSVersion) []Token {
	t.Helper()
	var toks []Token
	s := NewTokenScanner(stream, ver)
	for s.Scan() {
		toks = append(toks, s.Token())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if s.Offset() != len(stream) {
		t.Fatalf("scanner stopped at %d of %d", s.Offset(), len(stream))
	}
	return toks
}

func types(toks []Token) []TokenType {
	var ts []TokenType
	for _, t := range toks {
		ts = append(ts, t.Type)
	}
	return ts
}

func TestTokenScannerSpecFixtures(t *testing.T) {
	doneInProc14 := make([]TokenType, 14)
	for i := range doneInProc14 {
		doneInProc14[i] = TokenDoneInProc
	}
	tests := []struct {
		file string
		want []TokenType
	}{
		{"login_response.hex", []TokenType{ // MS-TDS 4.4
			TokenEnvChange, TokenInfo, TokenEnvChange, TokenEnvChange, TokenEnvChange, TokenInfo, TokenLoginAck, TokenDone}},
		{"login_response_fedauth.hex", []TokenType{ // MS-TDS 4.5
			TokenEnvChange, TokenInfo, TokenEnvChange, TokenEnvChange, TokenInfo, TokenLoginAck, TokenEnvChange, TokenFeatureExtAck, TokenDone}},
		{"login_response_azuresqlsupport.hex", append(doneInProc14, // MS-TDS 4.21
			TokenEnvChange, TokenInfo, TokenEnvChange, TokenEnvChange, TokenInfo, TokenLoginAck, TokenEnvChange, TokenFeatureExtAck, TokenDone)},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			h, payload := payloadOf(t, fixture(t, tc.file))
			if h.Type != PacketReply {
				t.Fatal(h)
			}
			if got := types(scanAll(t, payload, 0)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestLoginResponseSpecValues(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "login_response.hex")) // MS-TDS 4.4
	toks := scanAll(t, payload, 0)

	e, err := ParseEnvChange(toks[0].Raw)
	if err != nil || e.Type != EnvDatabase {
		t.Fatal(e, err)
	}
	if nv, ov, err := e.Strings(); nv != "master" || ov != "master" || err != nil {
		t.Fatalf("database %q %q %v", nv, ov, err)
	}
	info, err := ParseErrorInfo(toks[1].Raw)
	want := ErrorInfo{Number: 5701, State: 2, Message: "Changed database context to 'master'."}
	if err != nil || info != want {
		t.Fatalf("%#v %v", info, err)
	}
	e, _ = ParseEnvChange(toks[2].Raw)
	if nv, ov, err := e.Collation(); !bytes.Equal(nv, []byte{0x09, 0x04, 0xD0, 0x00, 0x34}) || len(ov) != 0 || err != nil {
		t.Fatalf("collation % X % X %v", nv, ov, err)
	}
	e, _ = ParseEnvChange(toks[3].Raw)
	if nv, ov, err := e.Strings(); e.Type != EnvLanguage || nv != "us_english" || ov != "" || err != nil {
		t.Fatalf("language %q %q %v", nv, ov, err)
	}
	e, _ = ParseEnvChange(toks[4].Raw)
	if n, err := e.PacketSize(); n != 4096 || err != nil {
		t.Fatalf("packet size %d %v", n, err)
	}
	ack, err := ParseLoginAck(toks[6].Raw)
	wantAck := LoginAck{Interface: 1, TDSVersion: TDS72, ProgName: "Microsoft SQL Server\x00\x00"}
	if err != nil || ack != wantAck {
		t.Fatalf("%#v %v", ack, err)
	}
	done, err := ParseDone(toks[7].Raw)
	if err != nil || done != (Done{Token: TokenDone}) {
		t.Fatalf("%#v %v", done, err)
	}
}

func TestLoginResponseFedAuthSpecValues(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "login_response_fedauth.hex")) // MS-TDS 4.5
	toks := scanAll(t, payload, 0)
	info, err := ParseErrorInfo(toks[1].Raw)
	if err != nil || info.ServerName != "cloud" || info.LineNumber != 1 {
		t.Fatalf("%#v %v", info, err)
	}
	ack, err := ParseLoginAck(toks[5].Raw)
	if err != nil || ack.TDSVersion != TDS74 || ack.ProgVersion != (Version{Major: 11, Build: 2251}) {
		t.Fatalf("%#v %v", ack, err)
	}
	acks, err := ParseFeatureExtAck(toks[7].Raw)
	if err != nil || len(acks) != 1 || acks[0].ID != FeatureFedAuth || len(acks[0].Data) != 64 {
		t.Fatalf("%v %v", acks, err)
	}
}

func TestLoginResponseAzureSpecValues(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "login_response_azuresqlsupport.hex")) // MS-TDS 4.21
	toks := scanAll(t, payload, 0)
	d, err := ParseDone(toks[0].Raw)
	if err != nil || d != (Done{Token: TokenDoneInProc, Status: DoneMore | DoneCount, CurCmd: 0xC1, RowCount: 1}) {
		t.Fatalf("%#v %v", d, err)
	}
	e, _ := ParseEnvChange(toks[20].Raw)
	if n, err := e.PacketSize(); n != 8000 || err != nil {
		t.Fatalf("packet size %d %v", n, err)
	}
	acks, err := ParseFeatureExtAck(toks[21].Raw)
	var ids []FeatureID
	for _, a := range acks {
		ids = append(ids, a.ID)
	}
	if err != nil || !reflect.DeepEqual(ids, []FeatureID{FeatureSessionRecovery, FeatureColumnEncryption, FeatureGlobalTransactions, FeatureAzureSQLSupport}) {
		t.Fatalf("%v %v", ids, err)
	}
	if len(acks[0].Data) != 0x77 || !bytes.Equal(acks[3].Data, []byte{1}) {
		t.Fatalf("%v", acks)
	}
}

// The builder reproduces the MS-TDS 4.4 and 4.5 login responses byte for
// byte.
func TestReplyBuilderReproducesSpec(t *testing.T) {
	_, want := payloadOf(t, fixture(t, "login_response.hex"))
	var rb ReplyBuilder
	rb.EnvDatabase("master", "master")
	rb.Info(ErrorInfo{Number: 5701, State: 2, Message: "Changed database context to 'master'."})
	rb.EnvCollation([]byte{0x09, 0x04, 0xD0, 0x00, 0x34}, nil)
	rb.EnvLanguage("us_english", "")
	rb.EnvPacketSize(4096, 4096)
	rb.Info(ErrorInfo{Number: 5703, State: 1, Message: "Changed language setting to us_english."})
	rb.LoginAck(LoginAck{Interface: 1, TDSVersion: TDS72, ProgName: "Microsoft SQL Server\x00\x00"})
	rb.Done(Done{})
	got, err := rb.Bytes()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("4.4:\ngot  % X\nwant % X\n%v", got, want, err)
	}

	_, want = payloadOf(t, fixture(t, "login_response_fedauth.hex"))
	toks := scanAll(t, want, 0)
	acks, _ := ParseFeatureExtAck(toks[7].Raw)
	rb.Reset()
	rb.EnvDatabase("master", "master")
	rb.Info(ErrorInfo{Number: 5701, State: 2, Message: "Changed database context to 'master'.", ServerName: "cloud", LineNumber: 1})
	rb.EnvCollation([]byte{0x09, 0x04, 0xD0, 0x00, 0x34}, nil)
	rb.EnvLanguage("us_english", "")
	rb.Info(ErrorInfo{Number: 5703, State: 1, Message: "Changed language setting to us_english.", ServerName: "cloud", LineNumber: 1})
	rb.LoginAck(LoginAck{Interface: 1, TDSVersion: TDS74, ProgName: "Microsoft SQL Server\x00\x00", ProgVersion: Version{Major: 11, Build: 2251}})
	rb.EnvPacketSize(4096, 4096)
	rb.FeatureExtAck(acks)
	rb.Done(Done{Token: TokenDone})
	if got, err := rb.Bytes(); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("4.5:\ngot  % X\nwant % X\n%v", got, want, err)
	}
}

func TestUnsupportedToken(t *testing.T) {
	_, payload := payloadOf(t, fixture(t, "sql_batch_response.hex")) // MS-TDS 4.7: COLMETADATA first
	s := NewTokenScanner(payload, 0)
	if s.Scan() {
		t.Fatal("scanned a COLMETADATA")
	}
	var ut *UnsupportedTokenError
	if err := s.Err(); !errors.As(err, &ut) || ut.Type != TokenColMetadata || ut.Offset != 0 || !errors.Is(err, ErrUnsupportedToken) {
		t.Fatalf("err = %v", err)
	}
	if s.Scan() {
		t.Fatal("Scan after an error must stay false")
	}

	// A ROW after sized tokens reports its offset.
	stream := append(doneBytes(TokenDoneInProc, 0x11, 13), byte(TokenRow), 0x01)
	s = NewTokenScanner(stream, 0)
	for s.Scan() {
	}
	if err := s.Err(); !errors.As(err, &ut) || ut.Type != TokenRow || ut.Offset != 13 {
		t.Fatalf("err = %v", err)
	}
}

// doneBytes encodes a DONE-type token with the row count width of n bytes
// total (13 or 9).
func doneBytes(t TokenType, status DoneStatus, n int) []byte {
	b := []byte{byte(t), byte(status), byte(status >> 8), 0xC1, 0x00}
	return append(b, make([]byte, n-5)...)
}

func TestTokenScannerMalformed(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		good    int // tokens returned before the error
	}{
		{"length prefix cut", []byte{0xAA, 0x01}, ErrTruncated, 0},
		{"length beyond stream", []byte{0xE3, 0x05, 0x00, 0x01, 0x00}, ErrTruncated, 0},
		{"DONE cut", doneBytes(TokenDone, 0, 13)[:12], ErrTruncated, 0},
		{"DONE then cut token", append(doneBytes(TokenDone, 1, 13), 0xAD), ErrTruncated, 1},
		{"DWORD length cut", []byte{0xEE, 0x04, 0x00, 0x00}, ErrTruncated, 0},
		{"DWORD length huge", []byte{0xEE, 0xFF, 0xFF, 0xFF, 0xFF, 0x00}, ErrTruncated, 0},
		{"SESSIONSTATE beyond", []byte{0xE4, 0x02, 0x00, 0x00, 0x00, 0x00}, ErrTruncated, 0},
		{"FEATUREEXTACK without terminator", []byte{0xAE, 0x01, 0x00, 0x00, 0x00, 0x00}, ErrNoTerminator, 0},
		{"FEATUREEXTACK empty", []byte{0xAE}, ErrNoTerminator, 0},
		{"FEATUREEXTACK data beyond", []byte{0xAE, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, ErrTruncated, 0},
		{"FEATUREEXTACK length cut", []byte{0xAE, 0x01, 0x00, 0x00}, ErrTruncated, 0},
		{"unknown token byte", []byte{0x00}, ErrUnsupportedToken, 0},
		{"RETURNVALUE", []byte{0xAC, 0x00}, ErrUnsupportedToken, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewTokenScanner(tc.in, 0)
			n := 0
			for s.Scan() {
				n++
			}
			if !errors.Is(s.Err(), tc.wantErr) || n != tc.good {
				t.Fatalf("%d tokens, err = %v, want %v", n, s.Err(), tc.wantErr)
			}
		})
	}
	// Fixed and zero-data tokens that the scanner sizes.
	ok := []byte{0x79, 1, 0, 0, 0, 0x78, 1, 0, 2, 0, 0xAE, 0xFF, 0xED, 0x01, 0x00, 0x4E, 0xA9, 0x02, 0x00, 0x01, 0x00, 0xEE, 0x04, 0, 0, 0, 0, 0, 0, 0}
	if got := types(scanAll(t, ok, 0)); !reflect.DeepEqual(got, []TokenType{TokenReturnStatus, TokenOffset, TokenFeatureExtAck, TokenSSPI, TokenOrder, TokenFedAuthInfo}) {
		t.Fatal(got)
	}
	if got := types(scanAll(t, nil, 0)); got != nil {
		t.Fatal(got)
	}
}

func TestTokenScannerTDS71(t *testing.T) {
	// With a 7.1 version DONE has a 4-byte row count.
	stream := append(doneBytes(TokenDone, DoneMore, 9), doneBytes(TokenDoneProc, 0, 9)...)
	if got := types(scanAll(t, stream, TDS71)); len(got) != 2 {
		t.Fatal(got)
	}
	// A LOGINACK announcing 7.1 switches the scanner.
	var rb ReplyBuilder
	rb.LoginAck(LoginAck{Interface: 1, TDSVersion: TDS71A, ProgName: "old"})
	ack, _ := rb.Bytes()
	stream = append(bytes.Clone(ack), doneBytes(TokenDone, 0, 9)...)
	toks := scanAll(t, stream, 0)
	if d, err := ParseDone(toks[1].Raw); err != nil || d.Token != TokenDone {
		t.Fatal(d, err)
	}
}

func TestErrorReply(t *testing.T) {
	e := ErrorInfo{Number: 18456, State: 1, Class: 14, Message: "Login failed for user 'sa'. Encryption is required by the gateway.", ServerName: "gateway", LineNumber: 1}
	for _, ver := range []TDSVersion{0, TDS74, TDS80, TDS71} {
		t.Run(ver.String(), func(t *testing.T) {
			p, err := ErrorReply(ver, e)
			if err != nil {
				t.Fatal(err)
			}
			toks := scanAll(t, p, ver)
			if !reflect.DeepEqual(types(toks), []TokenType{TokenError, TokenDone}) {
				t.Fatal(types(toks))
			}
			got, err := ParseErrorInfo(toks[0].Raw)
			if err != nil || got != e {
				t.Fatalf("%#v %v", got, err)
			}
			d, err := ParseDone(toks[1].Raw)
			if err != nil || d.Status != DoneError {
				t.Fatalf("%#v %v", d, err)
			}
			wantLen := 13
			if ver.Pre72() {
				wantLen = 9
			}
			if len(toks[1].Raw) != wantLen {
				t.Fatalf("DONE of %d bytes for %v", len(toks[1].Raw), ver)
			}
		})
	}
	if _, err := ErrorReply(0, ErrorInfo{ServerName: strings.Repeat("s", 256)}); !errors.Is(err, ErrFieldTooLong) {
		t.Fatal(err)
	}
}

func TestReplyBuilderRoundTrip(t *testing.T) {
	var rb ReplyBuilder
	errTok := ErrorInfo{Number: -1, State: 255, Class: 20, Message: "Ünïcödé 😀", ServerName: "srv", ProcName: "proc", LineNumber: -7}
	rb.Error(errTok)
	rb.Info(ErrorInfo{Number: 5701, Message: ""})
	ack := LoginAck{Interface: 1, TDSVersion: TDS74, ProgName: "Microsoft SQL Server", ProgVersion: Version{Major: 16, Minor: 0, Build: 4135}}
	rb.LoginAck(ack)
	rb.EnvDatabase("Kundenverwaltung", "master")
	rb.EnvLanguage("Deutsch", "us_english")
	rb.EnvPacketSize(8000, 4096)
	rb.EnvCollation([]byte{1, 2, 3, 4, 5}, []byte{6, 7, 8, 9, 10})
	r20 := Routing{Port: 11000, Server: "replica.internal"}
	rb.EnvRouting(r20)
	r21 := Routing{Enhanced: true, Port: 1433, Server: "db2", Database: "sales"}
	rb.EnvRouting(r21)
	fa := []FeatureAck{{ID: FeatureUTF8Support, Data: []byte{1}}, {ID: FeatureColumnEncryption, Data: []byte{}}}
	rb.FeatureExtAck(fa)
	rb.Done(Done{Token: TokenDoneProc, Status: DoneMore | DoneCount, CurCmd: 0xC1, RowCount: 1 << 40})
	rb.Append([]byte{0x79, 0, 0, 0, 0})
	stream, err := rb.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	toks := scanAll(t, stream, 0)
	if len(toks) != 12 {
		t.Fatal(types(toks))
	}
	if got, err := ParseErrorInfo(toks[0].Raw); err != nil || got != errTok || toks[0].Type != TokenError {
		t.Fatalf("%#v %v", got, err)
	}
	if got, err := ParseErrorInfo(toks[1].Raw); err != nil || got.Number != 5701 || toks[1].Type != TokenInfo {
		t.Fatalf("%#v %v", got, err)
	}
	if got, err := ParseLoginAck(toks[2].Raw); err != nil || got != ack {
		t.Fatalf("%#v %v", got, err)
	}
	strs := [][2]string{{"Kundenverwaltung", "master"}, {"Deutsch", "us_english"}, {"8000", "4096"}}
	for i, want := range strs {
		e, _ := ParseEnvChange(toks[3+i].Raw)
		if nv, ov, err := e.Strings(); nv != want[0] || ov != want[1] || err != nil {
			t.Fatalf("env %d: %q %q %v", i, nv, ov, err)
		}
	}
	e, _ := ParseEnvChange(toks[6].Raw)
	if nv, ov, err := e.Collation(); !bytes.Equal(nv, []byte{1, 2, 3, 4, 5}) || !bytes.Equal(ov, []byte{6, 7, 8, 9, 10}) || err != nil {
		t.Fatal(nv, ov, err)
	}
	for i, want := range []Routing{r20, r21} {
		e, _ := ParseEnvChange(toks[7+i].Raw)
		if got, err := e.Routing(); err != nil || got != want {
			t.Fatalf("routing %d: %#v %v", i, got, err)
		}
	}
	if got, err := ParseFeatureExtAck(toks[9].Raw); err != nil || !reflect.DeepEqual(got, fa) {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := ParseDone(toks[10].Raw); err != nil || got != (Done{Token: TokenDoneProc, Status: DoneMore | DoneCount, CurCmd: 0xC1, RowCount: 1 << 40}) {
		t.Fatalf("%#v %v", got, err)
	}
}

// A type 20 routing ENVCHANGE written by hand from MS-TDS 2.2.7.9.
var routingEnvChange = []byte{
	0xE3, 0x13, 0x00, // ENVCHANGE, length 19
	0x14,       // type 20
	0x0B, 0x00, // RoutingDataValueLength 11
	0x00,       // protocol TCP
	0x99, 0x05, // port 1433
	0x03, 0x00, 's', 0, 'r', 0, 'v', 0, // AlternateServer
	0x00, 0x00, // old value
}

func TestRoutingWire(t *testing.T) {
	// Fix the length byte: 1 type + 2 + 11 + 2 = 16.
	want := bytes.Clone(routingEnvChange)
	want[1] = 16
	var rb ReplyBuilder
	rb.EnvRouting(Routing{Port: 1433, Server: "srv"})
	if got, _ := rb.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got % X\nwant % X", got, want)
	}
	e, err := ParseEnvChange(want)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.Routing(); err != nil || r != (Routing{Port: 1433, Server: "srv"}) {
		t.Fatalf("%#v %v", r, err)
	}
}

func TestReplyBuilderErrors(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name    string
		build   func(*ReplyBuilder)
		wantErr error
	}{
		{"server name over 255", func(b *ReplyBuilder) { b.Error(ErrorInfo{ServerName: long}) }, ErrFieldTooLong},
		{"proc name over 255", func(b *ReplyBuilder) { b.Info(ErrorInfo{ProcName: long}) }, ErrFieldTooLong},
		{"message over the token length", func(b *ReplyBuilder) { b.Error(ErrorInfo{Message: strings.Repeat("x", 40000)}) }, ErrFieldTooLong},
		{"message over 65535 units", func(b *ReplyBuilder) { b.Error(ErrorInfo{Message: strings.Repeat("x", 70000)}) }, ErrFieldTooLong},
		{"prog name over 255", func(b *ReplyBuilder) { b.LoginAck(LoginAck{ProgName: long}) }, ErrFieldTooLong},
		{"database over 255", func(b *ReplyBuilder) { b.EnvDatabase(long, "") }, ErrFieldTooLong},
		{"old language over 255", func(b *ReplyBuilder) { b.EnvLanguage("", long) }, ErrFieldTooLong},
		{"negative packet size", func(b *ReplyBuilder) { b.EnvPacketSize(-1, 4096) }, ErrInvalidPacketSize},
		{"packet size over max", func(b *ReplyBuilder) { b.EnvPacketSize(4096, 40000) }, ErrInvalidPacketSize},
		{"collation over 255", func(b *ReplyBuilder) { b.EnvCollation(make([]byte, 256), nil) }, ErrFieldTooLong},
		{"routing server too long", func(b *ReplyBuilder) { b.EnvRouting(Routing{Server: strings.Repeat("x", 40000)}) }, ErrFieldTooLong},
		{"routing database too long", func(b *ReplyBuilder) {
			b.EnvRouting(Routing{Enhanced: true, Server: "s", Database: strings.Repeat("x", 70000)})
		}, ErrFieldTooLong},
		{"feature ack terminator id", func(b *ReplyBuilder) { b.FeatureExtAck([]FeatureAck{{ID: FeatureTerminator}}) }, ErrMalformed},
		{"done with another token", func(b *ReplyBuilder) { b.Done(Done{Token: TokenError}) }, ErrWrongToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b ReplyBuilder
			b.EnvDatabase("ok", "")
			tc.build(&b)
			// Later calls are no-ops once an error is recorded.
			b.Done(Done{})
			b.Append([]byte{1})
			b.FeatureExtAck(nil)
			b.EnvPacketSize(512, 512)
			if _, err := b.Bytes(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(b.buf) != 3+1+1+4+1 {
				t.Fatalf("buffer holds %d bytes after the error", len(b.buf))
			}
			b.Reset()
			if p, err := b.Bytes(); err != nil || len(p) != 0 {
				t.Fatalf("after Reset: %d bytes, %v", len(p), err)
			}
		})
	}
}

func TestParseTokensMalformed(t *testing.T) {
	var rb ReplyBuilder
	rb.Error(ErrorInfo{Number: 1, Message: "m", ServerName: "s", ProcName: "p", LineNumber: 2})
	errTok, _ := rb.Bytes()
	errTok = bytes.Clone(errTok)
	rb.Reset()
	rb.LoginAck(LoginAck{Interface: 1, TDSVersion: TDS74, ProgName: "x"})
	ackTok, _ := rb.Bytes()
	ackTok = bytes.Clone(ackTok)

	withLen := func(b []byte, n uint16) []byte {
		b = bytes.Clone(b)
		b[1], b[2] = byte(n), byte(n>>8)
		return b
	}
	env := func(body ...byte) []byte {
		return append([]byte{0xE3, byte(len(body)), 0}, body...)
	}
	tests := []struct {
		name    string
		parse   func() error
		wantErr error
	}{
		{"error: empty", func() error { _, err := ParseErrorInfo(nil); return err }, ErrTruncated},
		{"error: wrong type", func() error { _, err := ParseErrorInfo(ackTok); return err }, ErrWrongToken},
		{"error: length says less", func() error { _, err := ParseErrorInfo(withLen(errTok, uint16(len(errTok)-4))); return err }, ErrMalformed},
		{"error: cut inside message", func() error { _, err := ParseErrorInfo(withLen(errTok[:10], 7)); return err }, ErrTruncated},
		{"error: 3 bytes of line number", func() error {
			b := withLen(errTok[:len(errTok)-1], uint16(len(errTok)-4))
			_, err := ParseErrorInfo(b)
			return err
		}, ErrMalformed},
		{"error: no line number", func() error {
			b := withLen(errTok[:len(errTok)-4], uint16(len(errTok)-7))
			_, err := ParseErrorInfo(b)
			return err
		}, ErrMalformed},
		{"error: trailing bytes", func() error {
			b := withLen(append(bytes.Clone(errTok), 0, 0, 0), uint16(len(errTok)))
			_, err := ParseErrorInfo(b)
			return err
		}, ErrMalformed},
		{"loginack: wrong type", func() error { _, err := ParseLoginAck(errTok); return err }, ErrWrongToken},
		{"loginack: cut", func() error { _, err := ParseLoginAck(withLen(ackTok[:8], 5)); return err }, ErrTruncated},
		{"loginack: trailing", func() error {
			_, err := ParseLoginAck(withLen(append(bytes.Clone(ackTok), 9), uint16(len(ackTok)-2)))
			return err
		}, ErrMalformed},
		{"done: empty", func() error { _, err := ParseDone(nil); return err }, ErrTruncated},
		{"done: wrong type", func() error { _, err := ParseDone([]byte{0xAA}); return err }, ErrWrongToken},
		{"done: 12 bytes", func() error { _, err := ParseDone(doneBytes(TokenDone, 0, 13)[:12]); return err }, ErrMalformed},
		{"envchange: no type", func() error { _, err := ParseEnvChange([]byte{0xE3, 0, 0}); return err }, ErrTruncated},
		{"envchange: wrong type", func() error { _, err := ParseEnvChange(errTok); return err }, ErrWrongToken},
		{"strings on collation", func() error { _, _, err := mustEnv(env(7, 0, 0)).Strings(); return err }, ErrWrongToken},
		{"strings on type 200", func() error { _, _, err := mustEnv(env(200, 0, 0)).Strings(); return err }, ErrWrongToken},
		{"strings: old value missing", func() error { _, _, err := mustEnv(env(1, 1, 'a', 0)).Strings(); return err }, ErrTruncated},
		{"strings: trailing", func() error { _, _, err := mustEnv(env(1, 0, 0, 0)).Strings(); return err }, ErrMalformed},
		{"packet size on database", func() error { _, err := mustEnv(env(1, 0, 0)).PacketSize(); return err }, ErrWrongToken},
		{"packet size not a number", func() error { _, err := mustEnv(env(4, 1, 'x', 0, 0)).PacketSize(); return err }, ErrMalformed},
		{"packet size below 512", func() error { _, err := mustEnv(env(4, 2, '9', 0, '9', 0, 0)).PacketSize(); return err }, ErrMalformed},
		{"packet size cut", func() error { _, err := mustEnv(env(4, 4, '9', 0)).PacketSize(); return err }, ErrTruncated},
		{"collation on database", func() error { _, _, err := mustEnv(env(1, 0, 0)).Collation(); return err }, ErrWrongToken},
		{"collation cut", func() error { _, _, err := mustEnv(env(7, 5, 1, 2)).Collation(); return err }, ErrTruncated},
		{"routing on database", func() error { _, err := mustEnv(env(1, 0, 0)).Routing(); return err }, ErrWrongToken},
		{"routing old value set", func() error {
			b := bytes.Clone(routingEnvChange)
			b[1], b[len(b)-1] = 16, 1
			_, err := mustEnv(b).Routing()
			return err
		}, ErrMalformed},
		{"routing value length beyond", func() error { _, err := mustEnv(env(20, 0xFF, 0xFF, 0, 0)).Routing(); return err }, ErrTruncated},
		{"routing value cut", func() error { _, err := mustEnv(env(20, 2, 0, 0, 0, 0, 0)).Routing(); return err }, ErrTruncated},
		{"routing value trailing", func() error { _, err := mustEnv(env(20, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0)).Routing(); return err }, ErrMalformed},
		{"featureextack: wrong type", func() error { _, err := ParseFeatureExtAck(errTok); return err }, ErrWrongToken},
		{"featureextack: no terminator", func() error { _, err := ParseFeatureExtAck([]byte{0xAE, 1, 0, 0, 0, 0}); return err }, ErrNoTerminator},
		{"featureextack: data beyond", func() error { _, err := ParseFeatureExtAck([]byte{0xAE, 1, 9, 0, 0, 0, 0xFF}); return err }, ErrTruncated},
		{"featureextack: trailing", func() error { _, err := ParseFeatureExtAck([]byte{0xAE, 0xFF, 0}); return err }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func mustEnv(raw []byte) EnvChange {
	e, err := ParseEnvChange(raw)
	if err != nil {
		panic(err)
	}
	return e
}

func TestTokenAndVersionStrings(t *testing.T) {
	if TokenLoginAck.String() != "LOGINACK" || TokenType(0x01).String() != "TokenType(0x01)" {
		t.Fatal(TokenLoginAck, TokenType(0x01))
	}
	for v, s := range map[TDSVersion]string{TDS70: "7.0", TDS71: "7.1", TDS71A: "7.1A", TDS72: "7.2", TDS73A: "7.3A", TDS73B: "7.3B", TDS74: "7.4", TDS80: "8.0", 0x75000000: "0x75000000"} {
		if v.String() != s {
			t.Errorf("%08X: %q", uint32(v), v.String())
		}
	}
	for v, pre := range map[TDSVersion]bool{0: false, TDS70: true, TDS71: true, TDS71A: true, TDS72: false, TDS74: false, TDS80: false} {
		if v.Pre72() != pre {
			t.Errorf("%v.Pre72() = %t", v, v.Pre72())
		}
	}
	if (ErrorInfo{Number: 18456, Class: 14, State: 1, Message: "Login failed."}).String() != "msg 18456, level 14, state 1: Login failed." {
		t.Fatal("ErrorInfo.String")
	}
}
