package sqltunnel

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// TestMalformedInput: bad or out-of-order input closes that connection with
// a log line naming the client and the reason; the listener keeps serving.
func TestMalformedInput(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))

	login := (&rawClient{t: t}).login7(testUser, testPass, 4096)
	loginPacket, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketLogin7, Payload: login}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// Two options whose data overlap: VERSION at 11..17, ENCRYPTION at 11.
	overlap := []byte{0x00, 0, 11, 0, 6, 0x01, 0, 11, 0, 1, 0xFF, 1, 0, 0, 0, 0, 0}
	overlapPacket, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketPrelogin, Payload: overlap}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	noVersion := []byte{0x01, 0, 6, 0, 1, 0xFF, 0}
	noVersionPacket, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketPrelogin, Payload: noVersion}, 4096)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		input  []byte
		msg    string
		reason string
	}{
		{name: "length below 8", input: []byte{0x12, 0x01, 0x00, 0x04, 0, 0, 0, 0}, msg: "malformed TDS input; closing", reason: "reading PRELOGIN"},
		{name: "length above 32767", input: []byte{0x12, 0x01, 0xFF, 0xFF, 0, 0, 0, 0}, msg: "malformed TDS input; closing", reason: "reading PRELOGIN"},
		{name: "garbage after the first byte", input: []byte("\x12hello, world, this is no TDS"), msg: "malformed TDS input; closing", reason: "reading PRELOGIN"},
		{name: "LOGIN7 before PRELOGIN", input: loginPacket, msg: "malformed TDS input; closing", reason: "LOGIN7 before PRELOGIN"},
		{name: "overlapping PRELOGIN offsets", input: overlapPacket, msg: "malformed TDS input; closing", reason: "decoding PRELOGIN"},
		{name: "PRELOGIN without VERSION", input: noVersionPacket, msg: "malformed TDS input; closing", reason: "decoding PRELOGIN"},
		{name: "HTTP request", input: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), msg: "not a TDS client; closing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, g.addr)
			if _, err := c.conn.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
			want := map[string]any{"remote": c.conn.LocalAddr().String()}
			if tc.reason != "" {
				want["reason"] = tc.reason
			}
			g.logs.waitMsg(t, tc.msg, want)
		})
	}

	t.Run("PRELOGIN again instead of LOGIN7", func(t *testing.T) {
		c := dialRaw(t, g.addr)
		c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})
		tc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		c.use(tc)
		b, _ := (&tds.Prelogin{Encryption: new(tds.EncryptOn)}).MarshalBinary()
		if err := c.send(tds.PacketPrelogin, b); err != nil {
			t.Fatal(err)
		}
		c.expectClosed()
		g.logs.waitMsg(t, "malformed TDS input; closing", map[string]any{"remote": c.conn.LocalAddr().String(), "reason": "Prelogin message where LOGIN7 was expected"})
	})

	t.Run("undecodable LOGIN7 gets an ERROR", func(t *testing.T) {
		c := dialRaw(t, g.addr)
		c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})
		tc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		c.use(tc)
		bad := append([]byte(nil), login...)
		bad[36], bad[37] = 0xFF, 0xFF // HostName offset far outside the structure
		if err := c.send(tds.PacketLogin7, bad); err != nil {
			t.Fatal(err)
		}
		e := findError(c.replyTokens(0))
		if e == nil || e.Number != ErrorNumberMalformedLogin {
			t.Fatalf("reply error %v, want %d", e, ErrorNumberMalformedLogin)
		}
		g.logs.waitMsg(t, "sql login", map[string]any{"remote": c.conn.LocalAddr().String(), "outcome": "refused", "error_number": ErrorNumberMalformedLogin})
	})

	t.Run("TDS 8 client sends LOGIN7 before PRELOGIN", func(t *testing.T) {
		c := dialRaw(t, g.addr)
		conf := g.pki.clientTLS()
		conf.NextProtos = []string{"tds/8.0"}
		tc := tls.Client(c.conn, conf)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.use(tc)
		if err := c.send(tds.PacketLogin7, login); err != nil {
			t.Fatal(err)
		}
		c.expectClosed()
		g.logs.waitMsg(t, "malformed TDS input; closing", map[string]any{"remote": c.conn.LocalAddr().String(), "reason": "Login7 message before PRELOGIN"})
	})

	noLogin(t, srv)
	g.logs.assertNoSecret(t, testPass)

	// The listener still serves well-behaved clients.
	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
		t.Fatal(err)
	}
}

// TestMaxConns: connections over the cap are closed at once and logged;
// once a slot frees, clients are served again.
func TestMaxConns(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithMaxConns(1))

	// An idle connection takes the only slot. Its PRELOGIN answer proves
	// it was accepted before the next one.
	hold := dialRaw(t, g.addr)
	hold.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})

	over := dialRaw(t, g.addr)
	over.expectClosed()
	g.logs.waitMsg(t, "connection limit reached; closing connection", map[string]any{"remote": over.conn.LocalAddr().String(), "max_conns": 1})

	_ = hold.conn.Close()
	g.logs.waitMsg(t, "connection ended", map[string]any{"remote": hold.conn.LocalAddr().String()})
	if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"})); err != nil {
		t.Fatal(err)
	}
}

// TestTimeouts: a client that says nothing, stops in the middle of
// PRELOGIN or never sends LOGIN7 is closed at its deadline; an upstream that
// never answers PRELOGIN costs the client at most the dial timeout and an
// ERROR naming the upstream.
func TestTimeouts(t *testing.T) {
	const short = 200 * time.Millisecond
	t.Run("handshake", func(t *testing.T) {
		srv, caFile := upstreamDouble(t, tdstest.Config{})
		g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithHandshakeTimeout(short))
		for _, input := range [][]byte{nil, {0x12, 0x01}} {
			c := dialRaw(t, g.addr)
			if _, err := c.conn.Write(input); err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
			g.logs.waitMsg(t, "client timed out; closing", map[string]any{"remote": c.conn.LocalAddr().String()})
		}
	})
	t.Run("login", func(t *testing.T) {
		srv, caFile := upstreamDouble(t, tdstest.Config{})
		g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithLoginTimeout(short))
		c := dialRaw(t, g.addr)
		c.prelogin(&tds.Prelogin{Encryption: new(tds.EncryptOn)})
		tc, err := tdstls.Client(context.Background(), c.conn, g.pki.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		c.use(tc)
		c.expectClosed()
		g.logs.waitMsg(t, "client timed out; closing", map[string]any{"remote": c.conn.LocalAddr().String(), "during": "reading LOGIN7"})
		noLogin(t, srv)
	})
	t.Run("upstream stalls", func(t *testing.T) {
		srv, caFile := upstreamDouble(t, tdstest.Config{Faults: tdstest.Faults{StallAfterPrelogin: true}})
		g := startGateway(t, listenerConfig(srv.Addr(), caFile), WithDialTimeout(short))
		err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": "true"}))
		if me := sqlError(t, err); me.Number != ErrorNumberUpstreamProtocol {
			t.Fatalf("error %d %q, want %d", me.Number, me.Message, ErrorNumberUpstreamProtocol)
		}
		noLogin(t, srv)
	})
}
