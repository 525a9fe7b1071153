package tdstest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// rawClient is a hand-written TDS client built on package tds, for the
// tests that need exact control of the bytes: attention timing, faults,
// login-only encryption, malformed input.
type rawClient struct {
	t    testing.TB
	f    *fixture
	raw  net.Conn // the TCP connection
	conn net.Conn // what TDS packets travel on: raw or TLS
	r    *tds.Reader
	w    *tds.Writer
}

func dialRaw(t testing.TB, f *fixture) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	rc := &rawClient{t: t, f: f, raw: c}
	rc.use(c)
	return rc
}

// use makes conn the transport for TDS packets.
func (c *rawClient) use(conn net.Conn) {
	c.conn = conn
	c.r = tds.NewReader(conn)
	_ = c.r.SetMaxPacketSize(tds.MaxPacketSize)
	c.r.SetMaxMessageSize(64 << 20)
	c.w = tds.NewWriter(conn)
}

func (c *rawClient) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.f.rootPEM)
	return &tls.Config{RootCAs: pool, ServerName: testHost}
}

// prelogin sends a PRELOGIN with enc (nil: no ENCRYPTION option) and
// returns the server's answer.
func (c *rawClient) prelogin(enc *tds.Encryption) *tds.Prelogin {
	c.t.Helper()
	p := tds.Prelogin{Version: tds.Version{Major: 1}, Encryption: enc, InstOpt: tds.InstanceOpt(""), ThreadID: new(uint32(7))}
	payload, err := p.AppendBinary(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(tds.PacketPrelogin, payload)
	m := c.read()
	if m.Type != tds.PacketReply {
		c.t.Fatalf("PRELOGIN answer of type %s", m.Type)
	}
	ans, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		c.t.Fatalf("PRELOGIN answer: %v", err)
	}
	return ans
}

// startTLS runs the TDS 7.x TLS handshake and returns the TLS connection
// without switching to it.
func (c *rawClient) startTLS() *tls.Conn {
	c.t.Helper()
	tc, err := tdstls.Client(testContext(c.t), c.raw, c.tlsConfig())
	if err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}

func (c *rawClient) send(typ tds.PacketType, payload []byte) {
	c.t.Helper()
	if err := c.w.WriteMessage(tds.Message{Type: typ, Payload: payload}); err != nil {
		c.t.Fatalf("sending %s: %v", typ, err)
	}
}

func (c *rawClient) read() tds.Message {
	c.t.Helper()
	m, err := c.r.ReadMessage(nil)
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return m
}

// loginPayload builds a SQL login for the test user.
func loginPayload(t testing.TB, b tds.Login7Builder) []byte {
	t.Helper()
	if b.UserName == "" {
		b.UserName, b.Password = testUser, testPassword
	}
	if b.AppName == "" {
		b.AppName = "tdstest-raw"
	}
	p, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// login sends LOGIN7 and returns the reply's tokens.
func (c *rawClient) login(b tds.Login7Builder) []tds.Token {
	c.t.Helper()
	c.send(tds.PacketLogin7, loginPayload(c.t, b))
	return scanTokens(c.t, c.read().Payload)
}

// scanTokens splits a login-phase reply into tokens.
func scanTokens(t testing.TB, payload []byte) []tds.Token {
	t.Helper()
	var out []tds.Token
	s := tds.NewTokenScanner(payload, 0)
	for s.Scan() {
		out = append(out, s.Token())
	}
	if err := s.Err(); err != nil {
		t.Fatalf("reply tokens: %v", err)
	}
	return out
}

// loggedIn reports whether a login reply holds LOGINACK, and returns the
// granted packet size.
func loggedIn(t testing.TB, toks []tds.Token) (bool, int) {
	t.Helper()
	ack, size := false, 0
	for _, tok := range toks {
		switch tok.Type {
		case tds.TokenLoginAck:
			ack = true
		case tds.TokenEnvChange:
			e, err := tds.ParseEnvChange(tok.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type == tds.EnvPacketSize {
				if size, err = e.PacketSize(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return ack, size
}

// batchPayload encodes a SQL batch with the ALL_HEADERS of TDS 7.2+ (one
// transaction descriptor header).
func batchPayload(text string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 22) // TotalLength
	b = binary.LittleEndian.AppendUint32(b, 18)    // HeaderLength
	b = binary.LittleEndian.AppendUint16(b, 2)     // transaction descriptor
	b = binary.LittleEndian.AppendUint64(b, 0)     // descriptor
	b = binary.LittleEndian.AppendUint32(b, 1)     // outstanding requests
	return appendUCS2(b, text)
}

// lastDone decodes the DONE token that ends a TDS 7.2+ reply message.
func lastDone(t testing.TB, payload []byte) tds.Done {
	t.Helper()
	if len(payload) < 13 {
		t.Fatalf("reply of %d bytes has no DONE", len(payload))
	}
	d, err := tds.ParseDone(payload[len(payload)-13:])
	if err != nil {
		t.Fatalf("last token: %v (% x)", err, payload[len(payload)-13:])
	}
	return d
}

// plainLogin connects without encryption and logs in.
func plainLogin(t testing.TB, f *fixture, b tds.Login7Builder) *rawClient {
	t.Helper()
	c := dialRaw(t, f)
	if ans := c.prelogin(new(tds.EncryptNotSup)); *ans.Encryption != tds.EncryptNotSup {
		t.Fatalf("answer %v", *ans.Encryption)
	}
	if ok, _ := loggedIn(t, c.login(b)); !ok {
		t.Fatal("login failed")
	}
	return c
}
