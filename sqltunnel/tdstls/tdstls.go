package tdstls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// UnexpectedPacketError reports a packet other than PRELOGIN (or, from old
// servers, a reply packet) where a TLS handshake record was expected: for
// example a client that was told encryption is required but sent LOGIN7 in
// clear text instead of starting TLS.
type UnexpectedPacketError struct {
	Type tds.PacketType
}

func (e *UnexpectedPacketError) Error() string {
	return fmt.Sprintf("expected a TLS handshake in a PRELOGIN packet, got a %v packet", e.Type)
}

// Server performs the server side of a TDS 7.x TLS handshake on raw with cfg
// (limited to TLS 1.2, see Limit) and returns the TLS connection, now
// reading and writing directly on raw. ctx bounds the handshake.
func Server(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	sc := newSwitchConn(raw)
	conn := tls.Server(sc, Limit(cfg))
	return finish(ctx, sc, conn)
}

// Client performs the client side of a TDS 7.x TLS handshake on raw with cfg
// (limited to TLS 1.2, see Limit). Verification is cfg's: the caller
// supplies ServerName, RootCAs or VerifyConnection.
func Client(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	sc := newSwitchConn(raw)
	conn := tls.Client(sc, Limit(cfg))
	return finish(ctx, sc, conn)
}

func finish(ctx context.Context, sc *switchConn, conn *tls.Conn) (*tls.Conn, error) {
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	sc.passthrough()
	return conn, nil
}

// Limit returns cfg limited to what TDS 7.x carries, TLS 1.2 at most: cfg
// itself when it already is, else a clone. Server and Client apply it to
// every connection; callers that make many connections should apply it once
// and pass the result, because a server configuration cloned per connection
// gets fresh session ticket keys each time (unless SetSessionTicketKeys was
// called), and no client could then resume a session.
func Limit(cfg *tls.Config) *tls.Config {
	if cfg.MaxVersion != 0 && cfg.MaxVersion <= tls.VersionTLS12 && cfg.MinVersion <= tls.VersionTLS12 {
		return cfg
	}
	c := cfg.Clone()
	if c.MaxVersion == 0 || c.MaxVersion > tls.VersionTLS12 {
		c.MaxVersion = tls.VersionTLS12
	}
	if c.MinVersion > tls.VersionTLS12 {
		// The caller asked for TLS 1.3 only, which TDS 7.x cannot carry; the
		// handshake then fails with a version error rather than silently
		// accepting less.
		c.MaxVersion = c.MinVersion
	}
	return c
}

// switchConn is the transport under the tls.Conn. During the handshake it
// frames writes as PRELOGIN packets and unframes reads; afterwards it is a
// plain pass-through to the raw connection, because a tls.Conn cannot change
// its transport once created.
type switchConn struct {
	net.Conn // the raw connection: addresses, deadlines, Close

	framing atomic.Bool // reads and writes are framed (during the handshake)
	pending []byte      // unread payload of the current handshake packet
	buf     []byte
	hdr     [tds.HeaderLen]byte
}

func newSwitchConn(raw net.Conn) *switchConn {
	c := &switchConn{Conn: raw}
	c.framing.Store(true)
	return c
}

func (c *switchConn) passthrough() { c.framing.Store(false) }

func (c *switchConn) Read(p []byte) (int, error) {
	if !c.framing.Load() {
		return c.Conn.Read(p)
	}
	for len(c.pending) == 0 {
		if err := c.readPacket(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readPacket reads one handshake packet into pending. Packets of type 0x04
// are accepted too: servers before TDS 7.2 used it (MS-TDS 2.2.6.5).
func (c *switchConn) readPacket() error {
	if _, err := io.ReadFull(c.Conn, c.hdr[:]); err != nil {
		return err
	}
	h, err := tds.ParseHeader(c.hdr[:])
	if err != nil {
		return err
	}
	if h.Type != tds.PacketPrelogin && h.Type != tds.PacketReply {
		return &UnexpectedPacketError{Type: h.Type}
	}
	if int(h.Length) > tds.MaxPacketSize {
		return tds.ErrPacketTooLarge
	}
	n := h.PayloadLen()
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.Conn, c.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	c.pending = c.buf
	return nil
}

// Write sends one TLS flight as one PRELOGIN message, split into packets of
// at most the pre-login packet size (4096 bytes).
func (c *switchConn) Write(p []byte) (int, error) {
	if !c.framing.Load() {
		return c.Conn.Write(p)
	}
	out, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketPrelogin, Payload: p}, tds.DefaultPacketSize)
	if err != nil {
		return 0, err
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
