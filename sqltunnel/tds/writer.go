package tds

import (
	"fmt"
	"io"
)

// firstOnly and lastOnly are the status bits WriteMessage and AppendPackets
// put on one packet only (MS-TDS 2.2.3.1.2): the reset bits must be in the
// first packet, and the ignore bit accompanies EOM.
const (
	firstOnly = StatusResetConnection | StatusResetConnectionSkipTran
	lastOnly  = StatusEOM | StatusIgnore
)

// AppendPackets splits m into packets of at most packetSize bytes (header
// included), appends them to dst and returns the extended slice. Packet ids
// start at 1 and wrap modulo 256; see Message for how m.Status is spread over
// the packets. An empty payload yields one header-only packet. It fails with
// ErrInvalidPacketSize unless MinPacketSize <= packetSize <= MaxPacketSize.
func AppendPackets(dst []byte, m Message, packetSize int) ([]byte, error) {
	if packetSize < MinPacketSize || packetSize > MaxPacketSize {
		return dst, fmt.Errorf("tds: writer: packet size %d: %w", packetSize, ErrInvalidPacketSize)
	}
	p := m.Payload
	for id := 1; ; id++ {
		n := min(len(p), packetSize-HeaderLen)
		h := packetHeader(m, id, n, n == len(p))
		dst = h.AppendTo(dst)
		dst = append(dst, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return dst, nil
		}
	}
}

// packetHeader returns the header of packet number id (1-based) carrying n
// payload bytes of m.
func packetHeader(m Message, id, n int, last bool) Header {
	s := m.Status &^ (firstOnly | lastOnly)
	if id == 1 {
		s |= m.Status & firstOnly
	}
	if last {
		s |= m.Status&lastOnly | StatusEOM
	}
	return Header{
		Type:     m.Type,
		Status:   s,
		Length:   uint16(HeaderLen + n), // n <= MaxPacketSize-HeaderLen
		SPID:     m.SPID,
		PacketID: uint8(id), // wraps modulo 256 as MS-TDS 2.2.3.1.5 requires
	}
}

// Writer writes TDS messages to an io.Writer, split into packets of at most
// the packet size. Each packet is handed to the underlying writer in exactly
// one Write call, so a *tls.Conn never merges two packets into one TLS record
// and a packet is flushed as soon as it is complete.
//
// A Writer is not safe for concurrent use. The zero value is not usable; use
// NewWriter.
type Writer struct {
	w    io.Writer
	size int
	buf  []byte
}

// NewWriter returns a Writer over w with packet size DefaultPacketSize.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, size: DefaultPacketSize}
}

// SetPacketSize sets the largest packet, header included, that the Writer
// produces. It fails with ErrInvalidPacketSize unless
// MinPacketSize <= n <= MaxPacketSize.
func (w *Writer) SetPacketSize(n int) error {
	if n < MinPacketSize || n > MaxPacketSize {
		return fmt.Errorf("tds: writer: packet size %d: %w", n, ErrInvalidPacketSize)
	}
	w.size = n
	return nil
}

// PacketSize returns the largest packet the Writer produces.
func (w *Writer) PacketSize() int { return w.size }

// WriteMessage writes m as one or more packets (see AppendPackets). On error
// some packets may already have been written.
func (w *Writer) WriteMessage(m Message) error {
	if cap(w.buf) < w.size {
		w.buf = make([]byte, w.size)
	}
	p := m.Payload
	for id := 1; ; id++ {
		n := min(len(p), w.size-HeaderLen)
		pkt := w.buf[:HeaderLen+n]
		putHeader(pkt, packetHeader(m, id, n, n == len(p)))
		copy(pkt[HeaderLen:], p[:n])
		if _, err := w.w.Write(pkt); err != nil {
			return fmt.Errorf("tds: writer: writing %s packet %d: %w", m.Type, id, err)
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}
