package tdstest

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// replyWriter streams one reply message (packet type 0x04) at a time:
// tokens are appended to a packet buffer that is written out, in one Write
// call, each time it fills, and the last packet carries EOM. Memory is one
// packet whatever the size of the reply, and a packet is never split across
// Write calls, so over TLS each packet leaves as whole records (MS-TDS
// 2.2.3.1.3; SQL Server drops connections that mix packets and records).
type replyWriter struct {
	w    io.Writer
	spid uint16
	size int    // packet size, header included
	buf  []byte // the packet being filled; len(buf) >= tds.HeaderLen
	id   uint8  // packet id of the packet being filled
	// oversize, when set, makes the next packet one byte larger than size
	// (Faults.OversizedPacket).
	oversize bool
	err      error
}

func newReplyWriter(w io.Writer, size int, spid uint16) *replyWriter {
	rw := &replyWriter{w: w, spid: spid}
	rw.setPacketSize(size)
	return rw
}

// setPacketSize changes the packet size; call it between messages.
func (rw *replyWriter) setPacketSize(n int) {
	rw.size = n
	if cap(rw.buf) < n+1 {
		rw.buf = make([]byte, tds.HeaderLen, n+1)
	}
	rw.buf = rw.buf[:tds.HeaderLen]
	rw.id = 1
}

// capacity is the size of the packet being filled.
func (rw *replyWriter) capacity() int {
	if rw.oversize {
		return rw.size + 1
	}
	return rw.size
}

// Write appends p to the message, sending every packet that fills up. It
// never fails with a short write: after the first error every call returns
// that error.
func (rw *replyWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && rw.err == nil {
		room := rw.capacity() - len(rw.buf)
		if room == 0 {
			rw.flush(false)
			continue
		}
		k := min(room, len(p))
		rw.buf = append(rw.buf, p[:k]...)
		p = p[k:]
	}
	if rw.err != nil {
		return 0, rw.err
	}
	return n, nil
}

// end sends the last packet of the message, with EOM, and starts a new
// message.
func (rw *replyWriter) end() error {
	rw.flush(true)
	rw.id = 1
	return rw.err
}

func (rw *replyWriter) flush(eom bool) {
	if rw.err != nil {
		return
	}
	status := byte(0)
	if eom {
		status = byte(tds.StatusEOM)
	}
	b := rw.buf
	b[0] = byte(tds.PacketReply)
	b[1] = status
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], rw.spid)
	b[6] = rw.id
	b[7] = 0
	if _, err := rw.w.Write(b); err != nil {
		rw.err = fmt.Errorf("writing reply packet: %w", err)
		return
	}
	rw.oversize = false
	rw.id++ // wraps modulo 256 as MS-TDS 2.2.3.1.5 requires
	rw.buf = rw.buf[:tds.HeaderLen]
}

// message writes payload as a whole message.
func (rw *replyWriter) message(payload []byte) error {
	if _, err := rw.Write(payload); err != nil {
		return err
	}
	return rw.end()
}
