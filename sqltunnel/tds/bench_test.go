package tds

import (
	"bytes"
	"io"
	"testing"
)

func BenchmarkParseHeader(b *testing.B) {
	pkt := fixture(b, "login_response.hex")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadPacket(b *testing.B) {
	m := Message{Type: PacketReply, Payload: bytes.Repeat([]byte{0xAB}, 64*(DefaultPacketSize-HeaderLen))}
	wire, err := AppendPackets(nil, m, DefaultPacketSize)
	if err != nil {
		b.Fatal(err)
	}
	src := bytes.NewReader(wire)
	r := NewReader(src)
	b.SetBytes(DefaultPacketSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.ReadPacket(); err == io.EOF {
			src.Reset(wire)
			continue
		} else if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadMessage(b *testing.B) {
	login, err := (&Login7Builder{HostName: "ws", UserName: "sa", Password: "x", SSPI: make([]byte, 12000)}).Build()
	if err != nil {
		b.Fatal(err)
	}
	wire, _ := AppendPackets(nil, Message{Type: PacketLogin7, Payload: login}, DefaultPacketSize)
	src := bytes.NewReader(wire)
	r := NewReader(src)
	var buf []byte
	b.SetBytes(int64(len(login)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(wire)
		m, err := r.ReadMessage(buf)
		if err != nil {
			b.Fatal(err)
		}
		buf = m.Payload
	}
}

func BenchmarkWriteMessage(b *testing.B) {
	m := Message{Type: PacketReply, Payload: make([]byte, 3*DefaultPacketSize)}
	w := NewWriter(io.Discard)
	b.SetBytes(int64(len(m.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePrelogin(b *testing.B) {
	_, payload := payloadOf(b, fixture(b, "prelogin_request.hex"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePrelogin(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalPrelogin(b *testing.B) {
	p := Prelogin{Version: Version{Major: 16}, Encryption: new(EncryptReq), InstOpt: []byte{0}, MARS: new(false), FedAuthRequired: new(false)}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = p.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseLogin7(b *testing.B) {
	_, payload := payloadOf(b, fixture(b, "login7_azuresqlsupport.hex"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLogin7(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenScanner(b *testing.B) {
	_, payload := payloadOf(b, fixture(b, "login_response_azuresqlsupport.hex"))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewTokenScanner(payload, 0)
		for s.Scan() {
		}
		if s.Err() != nil {
			b.Fatal(s.Err())
		}
	}
}

func BenchmarkErrorReply(b *testing.B) {
	e := ErrorInfo{Number: 18456, State: 1, Class: 14, Message: "Login failed: the gateway requires encryption.", ServerName: "gateway"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ErrorReply(TDS74, e); err != nil {
			b.Fatal(err)
		}
	}
}
