package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"unicode/utf16"
)

// tap is a TCP relay that records both directions of every connection: put
// between a client and the gateway, or between the gateway and the double,
// it shows exactly what crossed that leg.
type tap struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	closed  bool // the test has ended: close what is accepted
	conns   []*tapConn
	changed chan struct{} // closed and replaced when a connection starts or ends
	wg      sync.WaitGroup
}

// tapConn is one relayed connection.
type tapConn struct {
	client, server net.Conn
	up, down       bytes.Buffer // client to server, server to client
	done           bool         // both directions have ended
}

// newTap listens on a free loopback port and relays to target until the
// test ends.
func newTap(t *testing.T, target string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{ln: ln, target: target, changed: make(chan struct{})}
	tp.wg.Add(1)
	go tp.accept(t)
	t.Cleanup(func() {
		// A test that failed half-way may leave connections open.
		_ = ln.Close()
		tp.mu.Lock()
		tp.closed = true
		for _, c := range tp.conns {
			_ = c.client.Close()
			_ = c.server.Close()
		}
		tp.mu.Unlock()
		tp.wg.Wait()
	})
	return tp
}

func (tp *tap) addr() string { return tp.ln.Addr().String() }

func (tp *tap) accept(t *testing.T) {
	defer tp.wg.Done()
	for {
		c, err := tp.ln.Accept()
		if err != nil {
			return // closed at cleanup
		}
		s, err := net.Dial("tcp", tp.target)
		if err != nil {
			t.Errorf("tap: dialing %s: %v", tp.target, err)
			_ = c.Close()
			continue
		}
		tc := &tapConn{client: c, server: s}
		tp.update(func() {
			if tp.closed {
				_, _ = c.Close(), s.Close()
			}
			tp.conns = append(tp.conns, tc)
		})
		tp.wg.Add(1)
		go tp.relay(tc, c.(*net.TCPConn), s.(*net.TCPConn))
	}
}

// relay copies both ways, recording, passes half-closes on, and closes
// both connections when both directions have ended.
func (tp *tap) relay(tc *tapConn, client, server *net.TCPConn) {
	defer tp.wg.Done()
	var both sync.WaitGroup
	pipe := func(dst, src *net.TCPConn, rec *bytes.Buffer) {
		defer both.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				tp.update(func() { rec.Write(buf[:n]) })
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.CloseWrite()
	}
	both.Add(2)
	go pipe(server, client, &tc.up)
	go pipe(client, server, &tc.down)
	both.Wait()
	_ = client.Close()
	_ = server.Close()
	tp.update(func() { tc.done = true })
}

func (tp *tap) update(f func()) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	f()
	close(tp.changed)
	tp.changed = make(chan struct{})
}

// capture is what crossed one connection, each direction whole.
type capture struct{ up, down []byte }

// wait waits until n connections have been relayed and have ended, and
// returns what each carried.
func (tp *tap) wait(ctx context.Context, n int) ([]capture, error) {
	for {
		tp.mu.Lock()
		ended := 0
		for _, c := range tp.conns {
			if c.done {
				ended++
			}
		}
		var caps []capture
		if ended >= n && ended == len(tp.conns) {
			for _, c := range tp.conns {
				caps = append(caps, capture{up: bytes.Clone(c.up.Bytes()), down: bytes.Clone(c.down.Bytes())})
			}
		}
		changed := tp.changed
		tp.mu.Unlock()
		if caps != nil {
			return caps, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("tap: %d of %d connections ended: %w", ended, n, ctx.Err())
		}
	}
}

// --- what crossed the wire --------------------------------------------------

// wireSummary describes one direction of a TDS leg.
type wireSummary struct {
	strict         bool // TLS from the first byte (TDS 8)
	preloginBytes  int  // the clear-text PRELOGIN message (TDS 7.x)
	handshakeUnits int  // TDS packets carrying the TLS handshake
	records        int  // TLS records sent directly on TCP
	appData        int  // of which application data (0x17)
}

func (s wireSummary) String() string {
	if s.strict {
		return fmt.Sprintf("TDS 8: %d TLS records (%d application data)", s.records, s.appData)
	}
	return fmt.Sprintf("PRELOGIN %d bytes, %d TDS packets of TLS handshake, then %d TLS records (%d application data)",
		s.preloginBytes, s.handshakeUnits, s.records, s.appData)
}

// TDS and TLS framing constants (MS-TDS 2.2.3.1, RFC 8446 5.1).
const (
	tdsHeaderLen       = 8
	tdsTypePrelogin    = 0x12
	tdsTypeReply       = 0x04
	tdsStatusEOM       = 0x01
	tlsHeaderLen       = 5
	tlsChangeCipher    = 0x14
	tlsAlert           = 0x15
	tlsHandshake       = 0x16
	tlsApplicationData = 0x17
)

// checkLegEncrypted parses one direction of a TDS leg and returns an error
// unless, after the PRELOGIN message, every byte is TLS: TDS 7.x as PRELOGIN
// (client) or reply (server) packets whose payloads are TLS handshake
// records, then TLS records directly on TCP; TDS 8 as TLS records from the
// first byte. A TDS packet of any other kind, or any TDS packet after the
// first direct TLS record, is clear text on the wire.
func checkLegEncrypted(b []byte) (wireSummary, error) {
	var s wireSummary
	if len(b) > 0 && b[0] == tlsHandshake {
		s.strict = true
		return s, tlsRecords(b, &s, false)
	}
	// TDS 7.x: the PRELOGIN message, in clear by design.
	pos := 0
	for eom := false; !eom; {
		h, err := tdsPacket(b, pos)
		if err != nil {
			return s, fmt.Errorf("PRELOGIN: %w", err)
		}
		if h.typ != tdsTypePrelogin && h.typ != tdsTypeReply {
			return s, fmt.Errorf("first message has packet type 0x%02x, want PRELOGIN", h.typ)
		}
		s.preloginBytes += h.length
		pos += h.length
		eom = h.status&tdsStatusEOM != 0
	}
	// The TLS handshake, carried in PRELOGIN (or, from older servers,
	// reply) packets; records may span packets, so payloads are joined.
	var hs []byte
	for pos < len(b) && (b[pos] == tdsTypePrelogin || b[pos] == tdsTypeReply) {
		h, err := tdsPacket(b, pos)
		if err != nil {
			return s, fmt.Errorf("TLS handshake packet %d: %w", s.handshakeUnits+1, err)
		}
		hs = append(hs, b[pos+tdsHeaderLen:pos+h.length]...)
		pos += h.length
		s.handshakeUnits++
	}
	if len(hs) == 0 {
		if pos == len(b) {
			return s, errors.New("nothing after PRELOGIN: no TLS")
		}
		return s, fmt.Errorf("offset %d after PRELOGIN: byte 0x%02x (a clear-text TDS packet of that type?), not a TLS handshake", pos, b[pos])
	}
	var hsSummary wireSummary
	if err := tlsRecords(hs, &hsSummary, true); err != nil {
		return s, fmt.Errorf("TDS packets after PRELOGIN carry clear text, not a TLS handshake: %w", err)
	}
	// Then TLS records directly on TCP, and nothing else.
	if err := tlsRecords(b[pos:], &s, false); err != nil {
		return s, fmt.Errorf("after the handshake (from offset %d), clear text: %w", pos, err)
	}
	return s, nil
}

type tdsHeader struct {
	typ, status byte
	length      int
}

func tdsPacket(b []byte, pos int) (tdsHeader, error) {
	if len(b)-pos < tdsHeaderLen {
		return tdsHeader{}, fmt.Errorf("%d bytes left at offset %d: short TDS header", len(b)-pos, pos)
	}
	h := tdsHeader{typ: b[pos], status: b[pos+1], length: int(binary.BigEndian.Uint16(b[pos+2:]))}
	if h.length < tdsHeaderLen || h.length > len(b)-pos {
		return h, fmt.Errorf("TDS packet at offset %d: length %d with %d bytes left", pos, h.length, len(b)-pos)
	}
	return h, nil
}

// tlsRecords checks that b is a sequence of whole TLS records (RFC 8446
// 5.1: type, legacy version 3.x, length at most 2^14+256). In a handshake
// only change_cipher_spec, alert and handshake records may appear.
func tlsRecords(b []byte, s *wireSummary, handshake bool) error {
	for pos := 0; pos < len(b); {
		if len(b)-pos < tlsHeaderLen {
			return fmt.Errorf("%d bytes left at offset %d: short TLS record header", len(b)-pos, pos)
		}
		typ, major, n := b[pos], b[pos+1], int(binary.BigEndian.Uint16(b[pos+3:]))
		ok := typ >= tlsChangeCipher && typ <= tlsApplicationData && major == 3 && n <= 1<<14+256
		if handshake && typ == tlsApplicationData {
			ok = false
		}
		if !ok {
			return fmt.Errorf("offset %d: % x is not a TLS record header", pos, b[pos:pos+tlsHeaderLen])
		}
		if len(b)-pos-tlsHeaderLen < n {
			return fmt.Errorf("offset %d: TLS record of %d bytes cut short", pos, n)
		}
		s.records++
		if typ == tlsApplicationData {
			s.appData++
		}
		pos += tlsHeaderLen + n
	}
	return nil
}

// needle is a string searched for on the wire in one encoding.
type needle struct {
	what  string
	bytes []byte
}

// needlesFor returns s in ASCII and UTF-16LE (how TDS sends SQL text and
// NVARCHAR values), and, for a password, in LOGIN7's obfuscated UTF-16LE
// (each byte's nibbles swapped, then XOR 0xA5; MS-TDS 2.2.6.4).
func needlesFor(what, s string, password bool) []needle {
	var u []byte
	for _, r := range utf16.Encode([]rune(s)) {
		u = binary.LittleEndian.AppendUint16(u, r)
	}
	ns := []needle{{what + " (ASCII)", []byte(s)}, {what + " (UTF-16LE)", u}}
	if password {
		ob := make([]byte, len(u))
		for i, c := range u {
			ob[i] = (c<<4 | c>>4) ^ 0xA5
		}
		ns = append(ns, needle{what + " (LOGIN7-obfuscated UTF-16LE)", ob})
	}
	return ns
}

// found returns the needles present in b.
func found(b []byte, ns []needle) []string {
	var hits []string
	for _, n := range ns {
		if bytes.Contains(b, n.bytes) {
			hits = append(hits, n.what)
		}
	}
	return hits
}
