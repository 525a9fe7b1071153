package tds

import (
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMessageSize is the default cap on a reassembled message: 128 KiB,
// the largest LOGIN7 MS-TDS 2.2.6.4 allows (128K-1 bytes), which is also far
// above any PRELOGIN, SSPI or FedAuth token message seen in a login.
const DefaultMaxMessageSize = 128 << 10

// Message is a whole TDS message: the concatenated payloads of one or more
// packets that share a type, the last one carrying StatusEOM.
type Message struct {
	// Type is the packet type of every packet of the message.
	Type PacketType
	// Status, when read, is the bitwise OR of the status bytes of all the
	// packets, so it includes StatusEOM, StatusIgnore set on the last packet
	// and the reset bits set on the first. When written, StatusResetConnection
	// and StatusResetConnectionSkipTran go on the first packet only,
	// StatusIgnore and StatusEOM on the last packet only, other bits on
	// every packet.
	Status Status
	// SPID is the SPID of the first packet when read, of every packet when
	// written.
	SPID uint16
	// Payload is the message without packet headers. It may be empty
	// (an attention message is a header-only packet).
	Payload []byte
}

// Reader reads TDS packets from an io.Reader, one packet or one message at
// a time, reusing one packet buffer. It does no buffering beyond the packet
// being read: it consumes exactly the bytes of the packets it returns.
//
// A Reader is not safe for concurrent use. The zero value is not usable; use
// NewReader.
type Reader struct {
	r          io.Reader
	maxPacket  int
	maxMessage int
	buf        []byte // len HeaderLen+payload of the last packet; cap >= maxPacket
}

// NewReader returns a Reader over r with a maximum packet size of
// DefaultPacketSize and a maximum message size of DefaultMaxMessageSize.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, maxPacket: DefaultPacketSize, maxMessage: DefaultMaxMessageSize}
}

// SetMaxPacketSize sets the largest packet, header included, that the
// Reader accepts; use it once ENVCHANGE type 4 has negotiated a packet size.
// It fails with ErrInvalidPacketSize unless MinPacketSize <= n <= MaxPacketSize.
func (r *Reader) SetMaxPacketSize(n int) error {
	if n < MinPacketSize || n > MaxPacketSize {
		return fmt.Errorf("tds: reader: packet size %d: %w", n, ErrInvalidPacketSize)
	}
	r.maxPacket = n
	return nil
}

// MaxPacketSize returns the largest packet the Reader accepts.
func (r *Reader) MaxPacketSize() int { return r.maxPacket }

// SetMaxMessageSize sets the largest payload ReadMessage reassembles; n <= 0
// restores DefaultMaxMessageSize.
func (r *Reader) SetMaxMessageSize(n int) {
	if n <= 0 {
		n = DefaultMaxMessageSize
	}
	r.maxMessage = n
}

// MaxMessageSize returns the largest payload ReadMessage reassembles.
func (r *Reader) MaxMessageSize() int { return r.maxMessage }

// ReadPacket reads one packet. The payload aliases the Reader's buffer and
// is valid only until the next call to ReadPacket or ReadMessage.
//
// It returns io.EOF if the stream ends cleanly before the first header byte
// and io.ErrUnexpectedEOF if it ends inside a packet. A header with Length
// below HeaderLen fails with ErrBadLength, one above the maximum packet size
// with ErrPacketTooLarge; in both cases the payload is not read and the
// stream cannot be resynchronised.
func (r *Reader) ReadPacket() (Header, []byte, error) {
	if cap(r.buf) < r.maxPacket {
		r.buf = make([]byte, r.maxPacket)
	}
	hb := r.buf[:HeaderLen]
	if _, err := io.ReadFull(r.r, hb); err != nil {
		return Header{}, nil, err // io.EOF before any byte, io.ErrUnexpectedEOF within
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return Header{}, nil, err
	}
	if int(h.Length) > r.maxPacket {
		return Header{}, nil, fmt.Errorf("tds: reader: %s length %d > %d: %w", h.Type, h.Length, r.maxPacket, ErrPacketTooLarge)
	}
	pkt := r.buf[:h.Length]
	if _, err := io.ReadFull(r.r, pkt[HeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, err
	}
	return h, pkt[HeaderLen:], nil
}

// ReadMessage reads packets until one carries StatusEOM and appends their
// payloads to dst[:0]; pass the previous Message.Payload as dst to reuse its
// memory, or nil. All packets must share the first packet's type
// (ErrMixedTypes otherwise), and the payload must not exceed the maximum
// message size (ErrMessageTooLarge, checked before the excess is copied).
// A stream that ends between packets of a message yields io.ErrUnexpectedEOF;
// one that ends before the first packet yields io.EOF.
func (r *Reader) ReadMessage(dst []byte) (Message, error) {
	m := Message{Payload: dst[:0]}
	for first := true; ; first = false {
		h, payload, err := r.ReadPacket()
		if err != nil {
			if !first && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
		if first {
			m.Type, m.SPID = h.Type, h.SPID
		} else if h.Type != m.Type {
			return Message{}, fmt.Errorf("tds: reader: %s packet inside a %s message: %w", h.Type, m.Type, ErrMixedTypes)
		}
		if len(payload) > r.maxMessage-len(m.Payload) {
			return Message{}, fmt.Errorf("tds: reader: %s message over %d bytes: %w", m.Type, r.maxMessage, ErrMessageTooLarge)
		}
		m.Status |= h.Status
		m.Payload = append(m.Payload, payload...)
		if h.EOM() {
			return m, nil
		}
	}
}
