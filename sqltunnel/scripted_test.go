package sqltunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// scripted is a hand-written TDS 7.x upstream for what the tdstest double
// does not do: MARS (SMP framing after login) and SSPI/FedAuth round trips.
// It serves one connection: PRELOGIN (answering ON, and MARS if asked and
// enabled), TLS inside PRELOGIN, LOGIN7, an optional authentication round
// trip, a login reply granting packetSize, then it echoes every byte.
type scripted struct {
	ln         net.Listener
	pki        *pki
	mars       bool
	auth       tds.TokenType // 0, TokenSSPI or TokenFedAuthInfo
	packetSize int
	refuse     *tds.ErrorInfo // answer the login with this ERROR instead of LOGINACK

	login   chan []byte      // the LOGIN7 payload as received
	authMsg chan tds.Message // the client's authentication message
	errc    chan error
}

func startScripted(t *testing.T, mars bool, auth tds.TokenType) *scripted {
	t.Helper()
	return startScriptedRefusing(t, mars, auth, nil)
}

// startScriptedRefusing is startScripted answering the login with refuse
// (after the authentication round trip) when it is not nil.
func startScriptedRefusing(t *testing.T, mars bool, auth tds.TokenType, refuse *tds.ErrorInfo) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{
		ln: ln, pki: newPKI(t, "127.0.0.1"), mars: mars, auth: auth, packetSize: 8192,
		login: make(chan []byte, 1), authMsg: make(chan tds.Message, 1), errc: make(chan error, 1), refuse: refuse,
	}
	go func() { s.errc <- s.serve() }()
	t.Cleanup(func() {
		_ = ln.Close()
		if err := <-s.errc; err != nil {
			t.Errorf("scripted upstream: %v", err)
		}
	})
	return s
}

func (s *scripted) serve() error {
	c, err := s.ln.Accept()
	if err != nil {
		return nil // closed before use
	}
	defer c.Close()
	r := tds.NewReader(c)
	m, err := r.ReadMessage(nil)
	if err != nil {
		return fmt.Errorf("reading PRELOGIN: %w", err)
	}
	pl, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		return err
	}
	ans := &tds.Prelogin{
		Version:    tds.Version{Major: 16, Build: 1000},
		Encryption: new(tds.EncryptOn),
		InstOpt:    []byte{0},
		MARS:       new(s.mars && pl.MARS != nil && *pl.MARS),
	}
	b, err := ans.MarshalBinary()
	if err != nil {
		return err
	}
	if err := tds.NewWriter(c).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: b}); err != nil {
		return err
	}
	tc, err := tdstls.Server(context.Background(), c, &tls.Config{Certificates: []tls.Certificate{s.pki.cert}})
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	r = tds.NewReader(tc)
	_ = r.SetMaxPacketSize(tds.MaxPacketSize)
	w := tds.NewWriter(tc)
	if m, err = r.ReadMessage(nil); err != nil || m.Type != tds.PacketLogin7 {
		return fmt.Errorf("reading LOGIN7: %v %v", m.Type, err)
	}
	s.login <- append([]byte(nil), m.Payload...)

	if s.auth != 0 {
		var tok []byte
		challenge := []byte("server-challenge")
		if s.auth == tds.TokenSSPI {
			tok = binary.LittleEndian.AppendUint16([]byte{byte(tds.TokenSSPI)}, uint16(len(challenge)))
		} else {
			tok = binary.LittleEndian.AppendUint32([]byte{byte(tds.TokenFedAuthInfo)}, uint32(len(challenge)))
		}
		tok = append(tok, challenge...)
		if err := w.WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: tok}); err != nil {
			return err
		}
		am, err := r.ReadMessage(nil)
		if err != nil {
			return fmt.Errorf("reading the authentication message: %w", err)
		}
		am.Payload = append([]byte(nil), am.Payload...)
		s.authMsg <- am
	}

	if s.refuse != nil {
		reply, err := tds.ErrorReply(tds.TDS74, *s.refuse)
		if err != nil {
			return err
		}
		return w.WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: reply})
	}
	var rb tds.ReplyBuilder
	rb.EnvDatabase("master", "")
	rb.LoginAck(tds.LoginAck{Interface: 1, TDSVersion: tds.TDS74, ProgName: "scripted", ProgVersion: tds.Version{Major: 16}})
	rb.EnvPacketSize(s.packetSize, tds.DefaultPacketSize)
	rb.Done(tds.Done{})
	reply, err := rb.Bytes()
	if err != nil {
		return err
	}
	if err := w.WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: reply}); err != nil {
		return err
	}
	_, _ = io.Copy(tc, tc) // echo until the gateway closes
	return nil
}

// smpFrame builds an SMP packet (MS-SMP 2.2.1) with payload after the header.
func smpFrame(flags byte, sid uint16, seq uint32, payload []byte) []byte {
	b := []byte{smpID, flags}
	b = binary.LittleEndian.AppendUint16(b, sid)
	b = binary.LittleEndian.AppendUint32(b, uint32(smpHeaderLen+len(payload)))
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, 4) // window
	return append(b, payload...)
}

// tdsPacket builds one packet of exactly size bytes.
func tdsPacket(typ tds.PacketType, size int) []byte {
	h := tds.Header{Type: typ, Status: tds.StatusEOM, Length: uint16(size), PacketID: 1}
	b := h.AppendTo(nil)
	for i := tds.HeaderLen; i < size; i++ {
		b = append(b, byte(i))
	}
	return b
}

// TestLoginRoundTripsAndFraming: SSPI and FedAuth round trips are relayed
// untouched (LOGIN7 byte for byte) and never logged; after the login the
// relay frames TDS packets, or SMP packets when MARS was agreed, up to the
// negotiated packet size, and closes the session on a larger one.
func TestLoginRoundTripsAndFraming(t *testing.T) {
	const sspiSecret, authSecret = "NTLMSSP-NEGOTIATE-sekrit-1", "AUTHENTICATE-or-token-sekrit-2"
	tests := []struct {
		name string
		mars bool
		auth tds.TokenType
	}{
		{name: "sql login", mars: false},
		{name: "sspi with MARS", mars: true, auth: tds.TokenSSPI},
		{name: "fedauth", auth: tds.TokenFedAuthInfo},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := startScripted(t, tc.mars, tc.auth)
			caFile := up.pki.rootFile
			g := startGateway(t, listenerConfig(up.ln.Addr().String(), caFile))

			c := dialRaw(t, g.addr)
			a := c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn), MARS: new(true)})
			if a.MARS == nil || *a.MARS != tc.mars {
				t.Fatalf("MARS answer %v, want %v", a.MARS, tc.mars)
			}
			tlsc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			c.use(tlsc)

			b := tds.Login7Builder{UserName: testUser, Password: testPass, Database: testDB, AppName: testAppStr, Library: "rawclient", PacketSize: 8192}
			authType := tds.PacketSSPI
			switch tc.auth {
			case tds.TokenSSPI:
				b.UserName, b.Password, b.SSPI = "", "", []byte(sspiSecret)
			case tds.TokenFedAuthInfo:
				b.UserName, b.Password = "", ""
				b.Features = []tds.FeatureExt{{ID: tds.FeatureFedAuth, Data: []byte{0x04, 0x02}}}
				authType = tds.PacketFedAuthToken
			}
			login, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.send(tds.PacketLogin7, login); err != nil {
				t.Fatal(err)
			}
			if tc.auth != 0 {
				if toks := c.replyTokens(0); !hasToken(toks, tc.auth) {
					t.Fatalf("reply without a %v token: %v", tc.auth, toks)
				}
				if err := c.send(authType, []byte(authSecret)); err != nil {
					t.Fatal(err)
				}
			}
			if toks := c.replyTokens(0); !hasToken(toks, tds.TokenLoginAck) {
				t.Fatalf("no LOGINACK: %v", toks)
			}
			if got := <-up.login; !bytes.Equal(got, login) {
				t.Fatal("the upstream received a LOGIN7 different from the client's")
			}
			if tc.auth != 0 {
				if m := <-up.authMsg; m.Type != authType || string(m.Payload) != authSecret {
					t.Fatalf("the upstream received %v %q", m.Type, m.Payload)
				}
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "mars": tc.mars, "negotiated_packet_size": up.packetSize})

			var frames [][]byte
			var oversized []byte
			if tc.mars {
				frames = [][]byte{
					smpFrame(0x01, 0, 0, nil), // SYN
					smpFrame(0x08, 0, 1, tdsPacket(tds.PacketSQLBatch, up.packetSize)),  // DATA, largest packet
					smpFrame(0x08, 1, 1, tdsPacket(tds.PacketAttention, tds.HeaderLen)), // DATA, attention
				}
				oversized = smpFrame(0x08, 0, 2, tdsPacket(tds.PacketSQLBatch, up.packetSize+1))
			} else {
				frames = [][]byte{tdsPacket(tds.PacketSQLBatch, up.packetSize), tdsPacket(tds.PacketAttention, tds.HeaderLen)}
				oversized = tdsPacket(tds.PacketSQLBatch, up.packetSize+1)
			}
			for i, f := range frames {
				if _, err := c.tds.Write(f); err != nil {
					t.Fatal(err)
				}
				echo := make([]byte, len(f))
				if _, err := io.ReadFull(c.tds, echo); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(echo, f) {
					t.Fatalf("frame %d changed in the relay", i)
				}
			}
			if _, err := c.tds.Write(oversized); err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
			g.logs.waitMsg(t, "sql session closed on malformed input from the client", nil)
			for _, secret := range []string{testPass, sspiSecret, authSecret} {
				g.logs.assertNoSecret(t, secret)
			}
		})
	}
}

// TestChannelBindingRefusal: SQL Server answers an integrated login whose
// channel binding does not match (Extended Protection) with error 18452,
// whose text speaks of an untrusted domain. Through the gateway the binding
// can never match, so the client gets 50908 saying so and what to change;
// a SQL login refused with the same number keeps the server's own error.
func TestChannelBindingRefusal(t *testing.T) {
	untrusted := &tds.ErrorInfo{Number: 18452, Class: 14, State: 1, ServerName: "scripted",
		Message: "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."}
	for _, integrated := range []bool{true, false} {
		t.Run(fmt.Sprintf("integrated=%v", integrated), func(t *testing.T) {
			auth := tds.TokenType(0)
			if integrated {
				auth = tds.TokenSSPI
			}
			up := startScriptedRefusing(t, false, auth, untrusted)
			g := startGateway(t, listenerConfig(up.ln.Addr().String(), up.pki.rootFile))
			c := dialRaw(t, g.addr)
			c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})
			tlsc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			c.use(tlsc)
			b := tds.Login7Builder{UserName: testUser, Password: testPass, Database: testDB, PacketSize: 4096}
			if integrated {
				b.UserName, b.Password, b.SSPI = "", "", []byte("NTLMSSP-negotiate")
			}
			login, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.send(tds.PacketLogin7, login); err != nil {
				t.Fatal(err)
			}
			if integrated {
				c.replyTokens(0) // the SSPI challenge
				if err := c.send(tds.PacketSSPI, []byte("NTLMSSP-authenticate")); err != nil {
					t.Fatal(err)
				}
			}
			e := findError(c.replyTokens(0))
			if e == nil {
				t.Fatal("no ERROR in the login reply")
			}
			if !integrated {
				if e.Number != 18452 {
					t.Fatalf("error %d, want the server's 18452 relayed", e.Number)
				}
				g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "login_failed", "error_number": 18452})
				return
			}
			if e.Number != ErrorNumberChannelBinding || !strings.Contains(e.Message, "Extended Protection to Off") || !strings.Contains(e.Message, "untrusted domain") {
				t.Fatalf("error %d %q, want %d naming Extended Protection and quoting the server", e.Number, e.Message, ErrorNumberChannelBinding)
			}
			g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "login_failed", "error_number": ErrorNumberChannelBinding, "auth": "integrated"})
		})
	}
}
