package tdstest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// TestAnswerEncryption checks the PRELOGIN answer against the MS-TDS
// 2.2.6.5 table (also in docs/architecture.md, "TDS encryption policy") for
// every client value and server setting.
func TestAnswerEncryption(t *testing.T) {
	const (
		off, on, notSup, req = tds.EncryptOff, tds.EncryptOn, tds.EncryptNotSup, tds.EncryptReq
		cert                 = tds.EncryptClientCert
	)
	tests := []struct {
		server Encryption
		client tds.Encryption
		answer tds.Encryption
		close  bool
		mode   Mode
	}{
		{EncryptOff, off, off, false, ModeLoginOnly},
		{EncryptOff, on, on, false, ModeFull},
		{EncryptOff, notSup, notSup, false, ModeNone},
		{EncryptOff, req, on, false, ModeFull},
		{EncryptForced, off, req, false, ModeFull},
		{EncryptForced, on, on, false, ModeFull},
		{EncryptForced, notSup, req, true, ModeFull},
		{EncryptForced, req, on, false, ModeFull},
		{EncryptNotSupported, off, notSup, false, ModeNone},
		{EncryptNotSupported, on, notSup, false, ModeNone},
		{EncryptNotSupported, notSup, notSup, false, ModeNone},
		{EncryptNotSupported, req, notSup, false, ModeNone},
		{EncryptOff, cert | off, off, false, ModeLoginOnly},
		{EncryptOff, cert | notSup, notSup, true, ModeNone},
		{EncryptForced, cert | notSup, req, true, ModeFull},
		{EncryptNotSupported, cert | notSup, notSup, true, ModeNone},
		{EncryptOff, 0x04, on, false, ModeFull}, // undefined value: treated as ON
	}
	for _, tc := range tests {
		t.Run(tc.server.String()+"/"+tc.client.String(), func(t *testing.T) {
			answer, closeAfter := answerEncryption(tc.server, tc.client)
			if answer != tc.answer || closeAfter != tc.close {
				t.Errorf("answer %v close %t, want %v close %t", answer, closeAfter, tc.answer, tc.close)
			}
			if m := modeFor(tc.client, answer); m != tc.mode {
				t.Errorf("mode %v, want %v", m, tc.mode)
			}
		})
	}
}

// TestLoginOnlyMultiPacket: in login-only encryption only the first LOGIN7
// packet travels inside TLS; the second follows at once in clear text and
// must not be swallowed by the TLS layer, and the reply is clear text.
func TestLoginOnlyMultiPacket(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptOff})
	c := dialRaw(t, f)
	if ans := c.prelogin(new(tds.EncryptOff)); *ans.Encryption != tds.EncryptOff {
		t.Fatalf("answer %v, want OFF", *ans.Encryption)
	}
	tc := c.startTLS()
	payload := loginPayload(t, tds.Login7Builder{AppName: strings.Repeat("a", 3000)}) // 2 packets
	pkts, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketLogin7, Payload: payload}, tds.DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	first := int(pkts[2])<<8 | int(pkts[3])
	if _, err := tc.Write(pkts[:first]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.raw.Write(pkts[first:]); err != nil { // clear text right behind the TLS record
		t.Fatal(err)
	}
	toks := scanTokens(t, c.read().Payload) // c still reads the raw connection
	if ok, _ := loggedIn(t, toks); !ok {
		t.Fatal("no LOGINACK")
	}
	c.send(tds.PacketSQLBatch, batchPayload("SELECT 1"))
	if d := lastDone(t, c.read().Payload); d.RowCount != 1 {
		t.Fatalf("SELECT 1: %+v", d)
	}
	_ = c.raw.Close()
	rec := f.waitOne(t, 1)
	if rec.Mode != ModeLoginOnly || !rec.LoginInTLS || rec.LoginPackets != 2 || rec.Outcome != OutcomeClosed || len(rec.AppName) != 3000 {
		t.Errorf("record: mode %v in TLS %t packets %d outcome %v (%v)", rec.Mode, rec.LoginInTLS, rec.LoginPackets, rec.Outcome, rec.Err)
	}
}

// TestClearLoginAfterEncryptionAnswer: a client told to encrypt that sends
// LOGIN7 in clear text is refused; the record says so.
func TestClearLoginAfterEncryptionAnswer(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptForced})
	c := dialRaw(t, f)
	if ans := c.prelogin(new(tds.EncryptOff)); *ans.Encryption != tds.EncryptReq {
		t.Fatalf("answer %v, want REQ", *ans.Encryption)
	}
	c.send(tds.PacketLogin7, loginPayload(t, tds.Login7Builder{}))
	rec := f.waitOne(t, 1)
	if rec.Outcome != OutcomeProtocolError || rec.LoginInTLS || rec.User != "" {
		t.Errorf("record: outcome %v (%v) in TLS %t user %q", rec.Outcome, rec.Err, rec.LoginInTLS, rec.User)
	}
}

// TestLoginRefusals: the ERROR tokens SQL Server sends for refused logins.
func TestLoginRefusals(t *testing.T) {
	tests := []struct {
		name    string
		login   tds.Login7Builder
		numbers []int32
	}{
		{"unknown user", tds.Login7Builder{UserName: "mallory", Password: "x"}, []int32{18456}},
		{"wrong password", tds.Login7Builder{UserName: testUser, Password: "x"}, []int32{18456}},
		{"integrated", tds.Login7Builder{UserName: " ", SSPI: []byte("NTLMSSP\x00")}, []int32{18452}},
		{"unknown database", tds.Login7Builder{Database: "payroll"}, []int32{4060, 18456}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			c := dialRaw(t, f)
			c.prelogin(new(tds.EncryptNotSup))
			toks := c.login(tc.login)
			var got []int32
			for _, tok := range toks {
				if tok.Type == tds.TokenError {
					e, err := tds.ParseErrorInfo(tok.Raw)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, e.Number)
				}
			}
			if len(got) != len(tc.numbers) || got[len(got)-1] != tc.numbers[len(tc.numbers)-1] {
				t.Fatalf("errors %v, want %v", got, tc.numbers)
			}
			if d, err := tds.ParseDone(toks[len(toks)-1].Raw); err != nil || d.Status != tds.DoneError {
				t.Fatalf("last token %+v %v, want DONE with DONE_ERROR", d, err)
			}
			if _, _, err := c.r.ReadPacket(); !errors.Is(err, io.EOF) {
				t.Errorf("after a refused login the server must close: %v", err)
			}
			if rec := f.waitOne(t, 1); rec.Outcome != OutcomeLoginFailed {
				t.Errorf("outcome %v", rec.Outcome)
			}
		})
	}
}

// TestLoginReply checks the reply to a successful login token by token with
// the codec, including FEATUREEXTACK, the packet size and a routing fault.
func TestLoginReply(t *testing.T) {
	routing := &tds.Routing{Port: 1444, Server: "replica.example"}
	f := newFixture(t, Config{Database: "crm", Faults: Faults{Routing: routing}})
	c := dialRaw(t, f)
	c.prelogin(new(tds.EncryptNotSup))
	toks := c.login(tds.Login7Builder{
		Database:   "CRM",
		PacketSize: 100000 & 0x7FFF, // 1696
		Features:   []tds.FeatureExt{{ID: tds.FeatureUTF8Support, Data: []byte{1}}},
	})
	var types []tds.TokenType
	var envs []tds.EnvChangeType
	for _, tok := range toks {
		types = append(types, tok.Type)
		switch tok.Type {
		case tds.TokenEnvChange:
			e, err := tds.ParseEnvChange(tok.Raw)
			if err != nil {
				t.Fatal(err)
			}
			envs = append(envs, e.Type)
			switch e.Type {
			case tds.EnvDatabase:
				if nv, _, _ := e.Strings(); nv != "crm" {
					t.Errorf("database %q, want crm", nv)
				}
			case tds.EnvPacketSize:
				if n, _ := e.PacketSize(); n != 1696 {
					t.Errorf("packet size %d, want 1696", n)
				}
			case tds.EnvRouting:
				if r, err := e.Routing(); err != nil || r.Port != 1444 || r.Server != "replica.example" {
					t.Errorf("routing %+v %v", r, err)
				}
			}
		case tds.TokenLoginAck:
			a, err := tds.ParseLoginAck(tok.Raw)
			if err != nil || a.TDSVersion != tds.TDS74 || a.Interface != 1 {
				t.Errorf("LOGINACK %+v %v", a, err)
			}
		case tds.TokenFeatureExtAck:
			if acks, err := tds.ParseFeatureExtAck(tok.Raw); err != nil || len(acks) != 0 {
				t.Errorf("FEATUREEXTACK %+v %v, want empty", acks, err)
			}
		}
	}
	want := []tds.TokenType{tds.TokenEnvChange, tds.TokenInfo, tds.TokenEnvChange, tds.TokenEnvChange, tds.TokenInfo,
		tds.TokenLoginAck, tds.TokenFeatureExtAck, tds.TokenEnvChange, tds.TokenEnvChange, tds.TokenDone}
	if len(types) != len(want) {
		t.Fatalf("tokens %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("tokens %v, want %v", types, want)
		}
	}
	wantEnv := []tds.EnvChangeType{tds.EnvDatabase, tds.EnvCollation, tds.EnvLanguage, tds.EnvPacketSize, tds.EnvRouting}
	for i := range wantEnv {
		if envs[i] != wantEnv[i] {
			t.Fatalf("ENVCHANGE types %v, want %v", envs, wantEnv)
		}
	}
	_ = c.raw.Close()
	if rec := f.waitOne(t, 1); rec.PacketSize != 1696 || len(rec.Features) != 1 || rec.Database != "CRM" {
		t.Errorf("record %+v", rec)
	}
}

// TestFaults covers the fault knobs that act on the handshake.
func TestFaults(t *testing.T) {
	t.Run("CloseAfterPrelogin", func(t *testing.T) {
		f := newFixture(t, Config{Faults: Faults{CloseAfterPrelogin: true}})
		c := dialRaw(t, f)
		c.send(tds.PacketPrelogin, mustPrelogin(t, tds.EncryptOn))
		if _, _, err := c.r.ReadPacket(); !errors.Is(err, io.EOF) {
			t.Fatalf("read %v, want EOF", err)
		}
		if rec := f.waitOne(t, 1); rec.Outcome != OutcomeFault || !rec.ClientPrelogin {
			t.Errorf("record %+v", rec)
		}
	})
	t.Run("StallAfterPrelogin", func(t *testing.T) {
		f := newFixture(t, Config{Faults: Faults{StallAfterPrelogin: true}})
		c := dialRaw(t, f)
		c.send(tds.PacketPrelogin, mustPrelogin(t, tds.EncryptOn))
		if _, err := f.srv.Wait(testContext(t), func(r []SessionRecord) bool { return len(r) == 1 && r[0].ClientPrelogin }); err != nil {
			t.Fatal(err)
		}
		_ = c.raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.r.ReadPacket(); !isTimeout(err) {
			t.Fatalf("read %v, want a timeout (no answer)", err)
		}
		_ = c.raw.Close()
		if rec := f.waitOne(t, 1); rec.Outcome != OutcomeFault {
			t.Errorf("record %+v", rec)
		}
	})
	t.Run("AnswerEncryption", func(t *testing.T) {
		f := newFixture(t, Config{Encryption: EncryptForced, Faults: Faults{AnswerEncryption: new(tds.EncryptNotSup)}})
		c := dialRaw(t, f)
		if ans := c.prelogin(new(tds.EncryptOn)); *ans.Encryption != tds.EncryptNotSup {
			t.Fatalf("answer %v, want the forced NOT_SUP", *ans.Encryption)
		}
		if ok, _ := loggedIn(t, c.login(tds.Login7Builder{})); !ok {
			t.Fatal("login refused")
		}
		_ = c.raw.Close()
		if rec := f.waitOne(t, 1); rec.Mode != ModeNone || rec.LoginInTLS || rec.AnsweredEncryption != tds.EncryptNotSup {
			t.Errorf("record %+v", rec)
		}
	})
	t.Run("OversizedPacket", func(t *testing.T) {
		f := newFixture(t, Config{Faults: Faults{OversizedPacket: true}})
		c := plainLogin(t, f, tds.Login7Builder{PacketSize: 4096})
		c.send(tds.PacketSQLBatch, batchPayload("SELECT 1"))
		h, _, err := c.r.ReadPacket()
		if err != nil || h.Length != 4097 {
			t.Fatalf("first reply packet %v %v, want 4097 bytes", h, err)
		}
		for !h.EOM() {
			if h, _, err = c.r.ReadPacket(); err != nil {
				t.Fatal(err)
			}
		}
		c.send(tds.PacketSQLBatch, batchPayload("SELECT 1"))
		if h, _, err := c.r.ReadPacket(); err != nil || !h.EOM() || h.Length > 4096 {
			t.Fatalf("second reply %v %v, want one normal packet", h, err)
		}
	})
}

func mustPrelogin(t *testing.T, enc tds.Encryption) []byte {
	t.Helper()
	p := tds.Prelogin{Encryption: &enc}
	b, err := p.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestMalformedInput: garbage closes the connection, the record says why,
// and the server keeps serving.
func TestMalformedInput(t *testing.T) {
	f := newFixture(t, Config{})
	inputs := []struct {
		name string
		data []byte
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"short header", []byte{0x12, 0x01, 0x00, 0x04, 0, 0, 0, 0}},
		{"oversized prelogin", []byte{0x12, 0x01, 0xFF, 0xFF, 0, 0, 0, 0}},
		{"bad prelogin", []byte{0x12, 0x01, 0x00, 0x0C, 0, 0, 1, 0, 0x01, 0x00, 0x00, 0xFF}},
		{"prelogin then garbage login", append(mustPacket(t, tds.PacketPrelogin, mustPrelogin(t, tds.EncryptNotSup)),
			mustPacket(t, tds.PacketLogin7, []byte{1, 2, 3})...)},
		{"tls garbage", []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}}, // empty ClientHello
	}
	for i, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			c := dialRaw(t, f)
			if _, err := c.raw.Write(in.data); err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, c.raw) // until the server closes
			rec := f.waitOne(t, i+1)
			if rec.Outcome != OutcomeProtocolError && rec.Outcome != OutcomeTLSFailed {
				t.Errorf("outcome %v (%v), want protocol_error", rec.Outcome, rec.Err)
			}
			t.Logf("%v: %v", rec.Outcome, rec.Err)
		})
	}
	// Still serving.
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("SELECT 1"))
	if d := lastDone(t, c.read().Payload); d.RowCount != 1 {
		t.Fatalf("SELECT 1: %+v", d)
	}
}

func mustPacket(t *testing.T, typ tds.PacketType, payload []byte) []byte {
	t.Helper()
	b, err := tds.AppendPackets(nil, tds.Message{Type: typ, Payload: payload}, tds.DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCloseEndsSessions: Close ends live sessions, a running WAITFOR
// included, and waits for them.
func TestCloseEndsSessions(t *testing.T) {
	f := newFixture(t, Config{})
	c := plainLogin(t, f, tds.Login7Builder{})
	c.send(tds.PacketSQLBatch, batchPayload("WAITFOR DELAY '05:00:00'"))
	idle := dialRaw(t, f) // connected, nothing sent
	_ = idle
	if _, err := f.srv.Wait(testContext(t), func(r []SessionRecord) bool {
		return len(r) == 2 && r[0].RequestCount == 1
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	recs := f.srv.Sessions()
	if recs[0].Outcome != OutcomeClosed || recs[1].Outcome != OutcomeServerClosed {
		t.Errorf("outcomes %v, %v", recs[0].Outcome, recs[1].Outcome)
	}
	if err := f.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", f.srv.Addr()); err == nil {
		t.Error("still listening after Close")
	}
}

// TestStrictALPN: TDS 8 negotiates tds/8.0 and TLS 1.3 with a plain
// crypto/tls client; a client offering another protocol is refused.
func TestStrictALPN(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptStrict})
	c := dialRaw(t, f)
	cfg := c.tlsConfig()
	cfg.NextProtos = []string{"tds/8.0"}
	tc := tls.Client(c.raw, cfg)
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.use(tc)
	c.prelogin(new(tds.EncryptOff))
	if ok, _ := loggedIn(t, c.login(tds.Login7Builder{TDSVersion: tds.TDS80})); !ok {
		t.Fatal("login refused")
	}
	_ = c.raw.Close()
	rec := f.waitOne(t, 1)
	if rec.Mode != ModeStrict || rec.ALPN != "tds/8.0" || rec.TLSVersion != tls.VersionTLS13 || !rec.LoginInTLS || rec.TDSVersion != tds.TDS80 {
		t.Errorf("record %+v", rec)
	}

	c = dialRaw(t, f)
	cfg.NextProtos = []string{"h2"}
	if err := tls.Client(c.raw, cfg).HandshakeContext(context.Background()); err == nil {
		t.Error("handshake offering only h2 succeeded")
	}
	if rec := f.waitOne(t, 2); rec.Outcome != OutcomeTLSFailed {
		t.Errorf("outcome %v", rec.Outcome)
	}
}

// FuzzSession feeds arbitrary bytes to a session, either from the start of
// the connection or after a clear-text login, and checks that the server
// neither panics nor stops serving.
func FuzzSession(f *testing.F) {
	f.Add(false, mustPacketF(f, tds.PacketPrelogin, mustPreloginF(f, tds.EncryptNotSup)))
	f.Add(true, mustPacketF(f, tds.PacketSQLBatch, batchPayload("SELECT * FROM tdstest.rows(2, 9000)")))
	f.Add(true, mustPacketF(f, tds.PacketRPC, rpcPayload(procExecuteSQL, "", "SELECT 1", true)))
	f.Add(true, append(mustPacketF(f, tds.PacketSQLBatch, batchPayload("WAITFOR DELAY '00:00:01'")), 6, 1, 0, 8, 0, 0, 1, 0))
	f.Add(true, mustPacketF(f, tds.PacketTransMgr, append(batchPayload(""), 5, 0, 0, 0)))
	f.Add(false, []byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})

	cert, _, err := NewCertificate()
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(Config{Certificate: &cert, Users: map[string]string{testUser: testPassword}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	prefix := mustPacketF(f, tds.PacketPrelogin, mustPreloginF(f, tds.EncryptNotSup))
	b := tds.Login7Builder{UserName: testUser, Password: testPassword}
	login, err := b.Build()
	if err != nil {
		f.Fatal(err)
	}
	prefix = append(prefix, mustPacketF(f, tds.PacketLogin7, login)...)

	f.Fuzz(func(t *testing.T, afterLogin bool, data []byte) {
		n := len(srv.Sessions()) // this connection's record is recs[n]
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if afterLogin {
			data = append(append([]byte{}, prefix...), data...)
		}
		_, _ = c.Write(data)
		// Half-close so the server sees the end of input, then wait for
		// it to finish the session (a WAITFOR in data ends early on EOF).
		// Reading stops after 1 MiB, closing the connection, in case data
		// asks for an endless rowset.
		_ = c.(*net.TCPConn).CloseWrite()
		go func() {
			_, _ = io.CopyN(io.Discard, c, 1<<20)
			_ = c.Close()
		}()
		recs, err := srv.Wait(context.Background(), func(r []SessionRecord) bool { return len(r) > n && r[n].Outcome != OutcomeActive })
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rec := recs[n]; errors.Is(rec.Err, errPanic) {
			t.Fatalf("session panicked: %v", rec.Err)
		}
	})
}

func mustPreloginF(f *testing.F, enc tds.Encryption) []byte {
	p := tds.Prelogin{Encryption: &enc}
	b, err := p.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func mustPacketF(f *testing.F, typ tds.PacketType, payload []byte) []byte {
	b, err := tds.AppendPackets(nil, tds.Message{Type: typ, Payload: payload}, tds.DefaultPacketSize)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
