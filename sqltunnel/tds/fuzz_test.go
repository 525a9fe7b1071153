package tds

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the MS-TDS section 4
// fixtures are added here as well. Run a target with, for example,
//
//	go test ./sqltunnel/tds -run '^$' -fuzz '^FuzzPrelogin$' -fuzztime 30s

func addFixturePayloads(f *testing.F, files ...string) {
	for _, name := range files {
		pkt := fixture(f, name)
		f.Add(pkt[HeaderLen:])
	}
}

func FuzzHeader(f *testing.F) {
	f.Add(fixture(f, "prelogin_request.hex")[:HeaderLen])
	f.Add([]byte{0x04, 0x01, 0x00, 0x07, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if len(b) >= HeaderLen && !errors.Is(err, ErrBadLength) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if h.Length < HeaderLen || h.PayloadLen() != int(h.Length)-HeaderLen {
			t.Fatalf("accepted %v", h)
		}
		if enc := h.AppendTo(nil); !bytes.Equal(enc, b[:HeaderLen]) {
			t.Fatalf("re-encoded % X from % X", enc, b[:HeaderLen])
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"prelogin_request.hex", "login7.hex", "login_response.hex", "attention.hex", "sspi_message.hex"} {
		f.Add(fixture(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Packets one by one.
		r := NewReader(bytes.NewReader(b))
		for {
			h, p, err := r.ReadPacket()
			if err != nil {
				break
			}
			if int(h.Length) > r.MaxPacketSize() || len(p) != h.PayloadLen() {
				t.Fatalf("packet %v with %d bytes", h, len(p))
			}
		}
		// Whole messages, with a small cap, and their re-encoding.
		r = NewReader(bytes.NewReader(b))
		_ = r.SetMaxPacketSize(MaxPacketSize)
		r.SetMaxMessageSize(1 << 16)
		var buf []byte
		for n := 0; ; n++ {
			m, err := r.ReadMessage(buf)
			if err != nil {
				if err == io.EOF && len(b) > 0 && n == 0 {
					t.Fatal("io.EOF on a non-empty stream before any message")
				}
				break
			}
			buf = m.Payload
			if len(m.Payload) > 1<<16 || m.Status&StatusEOM == 0 {
				t.Fatalf("message of %d bytes, status %v", len(m.Payload), m.Status)
			}
			wire, err := AppendPackets(nil, m, DefaultPacketSize)
			if err != nil {
				t.Fatal(err)
			}
			again, err := NewReader(bytes.NewReader(wire)).ReadMessage(nil)
			if err != nil || again.Type != m.Type || again.SPID != m.SPID || !bytes.Equal(again.Payload, m.Payload) {
				t.Fatalf("re-encoded message differs: %v", err)
			}
		}
	})
}

func FuzzPrelogin(f *testing.F) {
	addFixturePayloads(f, "prelogin_request.hex")
	f.Add(serverPreloginReply)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePrelogin(b)
		if err != nil {
			if p != nil {
				t.Fatal("result with an error")
			}
			return
		}
		enc, err := p.MarshalBinary()
		if err != nil {
			if len(b) <= 0xFFFF {
				t.Fatalf("cannot re-encode a decoded PRELOGIN of %d bytes: %v", len(b), err)
			}
			return
		}
		q, err := ParsePrelogin(enc)
		if err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		slices.SortStableFunc(p.Unknown, func(a, b PreloginOption) int { return int(a.Token) - int(b.Token) })
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip:\n%v\n%v", p, q)
		}
		if again, _ := q.MarshalBinary(); !bytes.Equal(again, enc) {
			t.Fatal("encoding is not canonical")
		}
	})
}

func FuzzLogin7(f *testing.F) {
	addFixturePayloads(f, "login7.hex", "login7_fedauth.hex", "login7_sessionrecovery.hex", "login7_azuresqlsupport.hex")
	for _, b := range []Login7Builder{
		{TDSVersion: TDS71, UserName: "sa", Password: "pw"},
		{SSPI: bytes.Repeat([]byte{1}, 0x10000), ChangePassword: "x"},
	} {
		enc, err := b.Build()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLogin7(b)
		pw, pwErr := DecodePasswordForServerSide(b)
		if err != nil {
			if l != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if pwErr != nil {
			t.Fatalf("ParseLogin7 accepted what DecodePasswordForServerSide rejects: %v", pwErr)
		}
		if int(l.Length) > len(b) || l.SSPILen > len(b) || l.HasSSPI != (l.SSPILen > 0) || (pw != "") != l.HasPassword {
			t.Fatalf("inconsistent %v", l)
		}
	})
}

func FuzzTokens(f *testing.F) {
	for _, name := range []string{"login_response.hex", "login_response_fedauth.hex", "login_response_azuresqlsupport.hex", "sql_batch_response.hex"} {
		f.Add(fixture(f, name)[HeaderLen:], uint32(0))
	}
	f.Add(routingEnvChange, uint32(TDS74))
	f.Add([]byte{0xFD, 0, 0, 0, 0, 0, 0, 0, 0}, uint32(TDS71))
	f.Fuzz(func(t *testing.T, b []byte, ver uint32) {
		s := NewTokenScanner(b, TDSVersion(ver))
		total := 0
		for s.Scan() {
			tok := s.Token()
			total += len(tok.Raw)
			if len(tok.Raw) == 0 || TokenType(tok.Raw[0]) != tok.Type {
				t.Fatalf("token %v with % X", tok.Type, tok.Raw)
			}
			checkToken(t, tok)
		}
		if total != s.Offset() || total > len(b) || (s.Err() == nil && total != len(b)) {
			t.Fatalf("scanned %d of %d bytes, offset %d, err %v", total, len(b), s.Offset(), s.Err())
		}
	})
}

// checkToken decodes tok with its parser and, when that succeeds, checks
// that re-encoding with ReplyBuilder decodes to the same value.
func checkToken(t *testing.T, tok Token) {
	var rb ReplyBuilder
	switch tok.Type {
	case TokenError, TokenInfo:
		e, err := ParseErrorInfo(tok.Raw)
		if err != nil {
			return
		}
		rb.Error(e) // a 16-bit line number comes back as the same 32-bit value
		if enc, err := rb.Bytes(); err == nil {
			if again, err := ParseErrorInfo(enc); err != nil || again != e {
				t.Fatalf("ERROR round trip: %#v vs %#v (%v)", e, again, err)
			}
		}
	case TokenLoginAck:
		a, err := ParseLoginAck(tok.Raw)
		if err != nil {
			return
		}
		rb.LoginAck(a)
		enc, err := rb.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if again, err := ParseLoginAck(enc); err != nil || again != a {
			t.Fatalf("LOGINACK round trip: %#v vs %#v (%v)", a, again, err)
		}
	case TokenDone, TokenDoneProc, TokenDoneInProc:
		if _, err := ParseDone(tok.Raw); err != nil {
			t.Fatalf("scanner sized a DONE the parser rejects: %v", err)
		}
	case TokenFeatureExtAck:
		acks, err := ParseFeatureExtAck(tok.Raw)
		if err != nil {
			t.Fatalf("scanner sized a FEATUREEXTACK the parser rejects: %v", err)
		}
		rb.FeatureExtAck(acks)
		if enc, _ := rb.Bytes(); !bytes.Equal(enc, tok.Raw) {
			t.Fatal("FEATUREEXTACK does not re-encode")
		}
	case TokenEnvChange:
		e, err := ParseEnvChange(tok.Raw)
		if err != nil {
			return
		}
		if nv, ov, err := e.Strings(); err == nil {
			rb.envStrings(e.Type, nv, ov)
			enc, _ := rb.Bytes()
			e2, err := ParseEnvChange(enc)
			if nv2, ov2, err2 := e2.Strings(); err != nil || err2 != nil || nv2 != nv || ov2 != ov {
				t.Fatalf("ENVCHANGE strings round trip: %q %q vs %q %q", nv, ov, nv2, ov2)
			}
		}
		_, _ = e.PacketSize()
		if nv, ov, err := e.Collation(); err == nil {
			rb.Reset()
			rb.EnvCollation(nv, ov)
			if enc, _ := rb.Bytes(); !bytes.Equal(enc, tok.Raw) {
				t.Fatal("collation does not re-encode")
			}
		}
		if r, err := e.Routing(); err == nil {
			rb.Reset()
			rb.EnvRouting(r)
			enc, _ := rb.Bytes()
			e2, _ := ParseEnvChange(enc)
			if r2, err := e2.Routing(); err != nil || r2 != r {
				t.Fatalf("routing round trip: %#v vs %#v (%v)", r, r2, err)
			}
		}
	}
}

func FuzzErrorReply(f *testing.F) {
	f.Add(uint32(0), int32(18456), byte(1), byte(14), "Login failed for user 'sa'.", "gateway", "", int32(1))
	f.Add(uint32(TDS71), int32(-1), byte(255), byte(20), "Ünïcödé 😀 \x00", "s", "p", int32(-1))
	f.Fuzz(func(t *testing.T, ver uint32, number int32, state, class byte, msg, server, proc string, line int32) {
		e := ErrorInfo{Number: number, State: state, Class: class, Message: msg, ServerName: server, ProcName: proc, LineNumber: line}
		p, err := ErrorReply(TDSVersion(ver), e)
		if err != nil {
			if !errors.Is(err, ErrFieldTooLong) {
				t.Fatal(err)
			}
			return
		}
		s := NewTokenScanner(p, TDSVersion(ver))
		if !s.Scan() {
			t.Fatal(s.Err())
		}
		got, err := ParseErrorInfo(s.Token().Raw)
		if err != nil {
			t.Fatal(err)
		}
		// Strings come back as their UTF-16 round trip; the line number is
		// narrowed before TDS 7.2.
		want := e
		want.Message, _ = decodeUCS2(appendUCS2(nil, msg))
		want.ServerName, _ = decodeUCS2(appendUCS2(nil, server))
		want.ProcName, _ = decodeUCS2(appendUCS2(nil, proc))
		if TDSVersion(ver).Pre72() {
			want.LineNumber = int32(uint16(line))
		}
		if got != want {
			t.Fatalf("%#v\n%#v", got, want)
		}
		if !s.Scan() || s.Scan() || s.Err() != nil {
			t.Fatalf("DONE missing or extra tokens: %v", s.Err())
		}
	})
}
