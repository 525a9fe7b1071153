package tds_test

import (
	"bytes"
	"fmt"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// A gateway reads a client's PRELOGIN, looks at its ENCRYPTION option and
// answers with its own PRELOGIN in a reply packet.
func Example_prelogin() {
	// What a client sends: VERSION and ENCRYPTION OFF ("login-only").
	var client bytes.Buffer
	req, _ := (&tds.Prelogin{Version: tds.Version{Major: 1}, Encryption: new(tds.EncryptOff), InstOpt: tds.InstanceOpt("")}).MarshalBinary()
	_ = tds.NewWriter(&client).WriteMessage(tds.Message{Type: tds.PacketPrelogin, Payload: req})

	m, err := tds.NewReader(&client).ReadMessage(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("client:", p.Version, *p.Encryption)

	// Answer REQ so that the client encrypts the whole session.
	resp, _ := (&tds.Prelogin{Version: tds.Version{Major: 16}, Encryption: new(tds.EncryptReq), InstOpt: []byte{0}}).MarshalBinary()
	var out bytes.Buffer
	_ = tds.NewWriter(&out).WriteMessage(tds.Message{Type: tds.PacketReply, Payload: resp})
	fmt.Printf("reply: % X\n", out.Bytes()[:tds.HeaderLen])
	// Output:
	// client: 1.0.0.0 OFF
	// reply: 04 01 00 20 00 00 01 00
}

// A gateway that refuses a login answers with an ERROR and a DONE.
func ExampleErrorReply() {
	payload, err := tds.ErrorReply(tds.TDS74, tds.ErrorInfo{
		Number: 18456, State: 1, Class: 14,
		Message:    "Login failed: this gateway requires encryption.",
		ServerName: "gateway",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	s := tds.NewTokenScanner(payload, tds.TDS74)
	for s.Scan() {
		fmt.Println(s.Token().Type, len(s.Token().Raw))
	}
	// Output:
	// ERROR 125
	// DONE 13
}

// Reading a login reply: the negotiated packet size and any routing.
func ExampleTokenScanner() {
	var rb tds.ReplyBuilder
	rb.LoginAck(tds.LoginAck{Interface: 1, TDSVersion: tds.TDS74, ProgName: "Microsoft SQL Server", ProgVersion: tds.Version{Major: 16}})
	rb.EnvPacketSize(8000, 4096)
	rb.EnvRouting(tds.Routing{Port: 11000, Server: "replica.internal"})
	rb.Done(tds.Done{})
	reply, _ := rb.Bytes()

	s := tds.NewTokenScanner(reply, 0)
	for s.Scan() {
		tok := s.Token()
		switch tok.Type {
		case tds.TokenLoginAck:
			ack, _ := tds.ParseLoginAck(tok.Raw)
			fmt.Println("login ok, TDS", ack.TDSVersion, "server", ack.ProgVersion.Major)
		case tds.TokenEnvChange:
			e, err := tds.ParseEnvChange(tok.Raw)
			if err != nil {
				fmt.Println(err)
				return
			}
			switch e.Type {
			case tds.EnvPacketSize:
				n, _ := e.PacketSize()
				fmt.Println("packet size", n)
			case tds.EnvRouting, tds.EnvEnhancedRouting:
				r, _ := e.Routing()
				fmt.Printf("routed to %s:%d\n", r.Server, r.Port)
			}
		}
	}
	if err := s.Err(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// login ok, TDS 7.4 server 16
	// packet size 8000
	// routed to replica.internal:11000
}
