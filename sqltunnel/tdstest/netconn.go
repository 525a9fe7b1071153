package tdstest

import (
	"encoding/binary"
	"net"
)

// peekedConn replays the first byte, read to tell TDS 7.x (0x12) from TDS 8
// (0x16, a TLS handshake record), before reading from the connection.
type peekedConn struct {
	net.Conn
	first  byte
	peeked bool // first not yet returned
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.peeked && len(p) > 0 {
		c.peeked = false
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// recordConn is the raw connection under the TLS of a TDS 7.x session. In
// exact mode it never reads past the end of the TLS record being read: a
// tls.Conn reads ahead as far as its buffer allows, and in login-only
// encryption the bytes after the first LOGIN7 packet's records are clear
// text that must stay on the socket for the clear-text reader.
type recordConn struct {
	net.Conn
	exact bool
	hdr   [5]byte // TLS record header being read
	hdrN  int
	body  int // bytes of the current record body still to read
}

const tlsRecordHeaderLen = 5

func (c *recordConn) Read(p []byte) (int, error) {
	if !c.exact || len(p) == 0 {
		return c.Conn.Read(p)
	}
	inHeader := c.body == 0
	if inHeader {
		p = p[:min(len(p), tlsRecordHeaderLen-c.hdrN)]
	} else {
		p = p[:min(len(p), c.body)]
	}
	n, err := c.Conn.Read(p)
	if inHeader {
		c.hdrN += copy(c.hdr[c.hdrN:], p[:n])
		if c.hdrN == tlsRecordHeaderLen {
			c.hdrN = 0
			c.body = int(binary.BigEndian.Uint16(c.hdr[3:5]))
		}
	} else {
		c.body -= n
	}
	return n, err
}
