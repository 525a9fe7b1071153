package sqltunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// SMP (MS-SMP), the session multiplexing MARS uses after login: every
// packet starts with a 16-byte header, SMID 0x53 then FLAGS, SID (2),
// LENGTH (4, little-endian, header included), SEQNUM (4) and WNDW (4).
// A DATA packet carries one TDS packet after the header.
const (
	smpID        = 0x53
	smpHeaderLen = 16
	// maxFrame is the largest frame the relay reads: an SMP header and a
	// packet of the largest negotiable size.
	maxFrame = smpHeaderLen + tds.MaxPacketSize
)

// errBadFrame wraps framing errors the codec has no sentinel for.
var errBadFrame = errors.New("bad frame")

// framePool holds the relay's frame buffers: bounded memory, at most one
// frame per direction of a session, reused across sessions.
var framePool = sync.Pool{New: func() any { return new([maxFrame]byte) }}

// framer reads whole frames (TDS packets, or SMP packets when smp is set)
// from r into buf, so that each can be written on the other leg in exactly
// one Write call. Like tds.Reader it consumes exactly the bytes it returns.
//
// The frame buffer is taken from framePool only once a frame's header has
// arrived, and given back at the next call: a session waiting for its next
// request (most sessions of a connection pool, most of the time) holds no
// frame buffer at all, instead of two of 32 KiB.
type framer struct {
	r         io.Reader
	hdr       [tds.HeaderLen]byte // the header being waited for
	buf       *[maxFrame]byte     // the current frame, or nil
	maxPacket int                 // largest TDS packet accepted, header included
	smp       bool                // accept SMP packets (MARS negotiated)
}

func newFramer(r io.Reader, maxPacket int, smp bool) *framer {
	return &framer{r: r, maxPacket: maxPacket, smp: smp}
}

// release returns the buffer to the pool; the framer must not be used after.
func (f *framer) release() {
	if f.buf != nil {
		framePool.Put(f.buf)
		f.buf = nil
	}
}

// next reads one frame. The slice aliases a pooled buffer until the next
// call (or release). A stream that ends cleanly between frames returns
// io.EOF; inside a frame, io.ErrUnexpectedEOF.
func (f *framer) next() ([]byte, error) {
	f.release() // the previous frame has been used
	if _, err := io.ReadFull(f.r, f.hdr[:tds.HeaderLen]); err != nil {
		return nil, err
	}
	f.buf = framePool.Get().(*[maxFrame]byte)
	b := f.buf[:]
	copy(b, f.hdr[:tds.HeaderLen])
	n, have := 0, tds.HeaderLen
	if f.smp && b[0] == smpID {
		if err := readRest(f.r, b[tds.HeaderLen:smpHeaderLen]); err != nil {
			return nil, err
		}
		l := binary.LittleEndian.Uint32(b[4:8])
		if l < smpHeaderLen || l > uint32(smpHeaderLen+f.maxPacket) {
			return nil, fmt.Errorf("SMP packet length %d outside %d..%d: %w", l, smpHeaderLen, smpHeaderLen+f.maxPacket, errBadFrame)
		}
		n, have = int(l), smpHeaderLen
	} else {
		h, err := tds.ParseHeader(b[:tds.HeaderLen])
		if err != nil {
			return nil, err
		}
		if int(h.Length) > f.maxPacket {
			return nil, fmt.Errorf("%s packet length %d > %d: %w", h.Type, h.Length, f.maxPacket, tds.ErrPacketTooLarge)
		}
		n = int(h.Length)
	}
	if err := readRest(f.r, b[have:n]); err != nil {
		return nil, err
	}
	return b[:n], nil
}

func readRest(r io.Reader, b []byte) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// rawMessage is a message kept both as its packets, to forward them
// unchanged, and as its reassembled payload, to inspect it.
type rawMessage struct {
	typ     tds.PacketType
	packets [][]byte
	payload []byte
	size    int // bytes of all packets, headers included
}

// readMessage reads TDS packets (never SMP) until end of message, copying
// them; the payload may not exceed maxPayload.
func (f *framer) readMessage(maxPayload int) (*rawMessage, error) {
	m := &rawMessage{}
	for first := true; ; first = false {
		pkt, err := f.next()
		if err != nil {
			if !first && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		h, err := tds.ParseHeader(pkt)
		if err != nil {
			return nil, err
		}
		if first {
			m.typ = h.Type
		} else if h.Type != m.typ {
			return nil, fmt.Errorf("%s packet inside a %s message: %w", h.Type, m.typ, tds.ErrMixedTypes)
		}
		if len(m.payload)+len(pkt)-tds.HeaderLen > maxPayload {
			return nil, fmt.Errorf("%s message over %d bytes: %w", m.typ, maxPayload, tds.ErrMessageTooLarge)
		}
		m.packets = append(m.packets, append([]byte(nil), pkt...))
		m.payload = append(m.payload, pkt[tds.HeaderLen:]...)
		m.size += len(pkt)
		if h.EOM() {
			return m, nil
		}
	}
}

// writePackets writes each packet of m in its own Write call.
func writePackets(w io.Writer, m *rawMessage) error {
	for _, p := range m.packets {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}
