package tds

import (
	"encoding/binary"
	"fmt"
)

// Packet sizes (MS-TDS 2.2.3.1.3). A packet's Length counts its header.
const (
	// HeaderLen is the size of a packet header.
	HeaderLen = 8
	// DefaultPacketSize is the largest packet allowed until LOGIN7 and the
	// server's ENVCHANGE (type 4) negotiate another size.
	DefaultPacketSize = 4096
	// MinPacketSize is the smallest packet size that can be negotiated.
	MinPacketSize = 512
	// MaxPacketSize is the largest packet size that can be negotiated.
	MaxPacketSize = 32767
)

// PacketType is the first byte of a packet header: the kind of message the
// packet belongs to (MS-TDS 2.2.3.1.1).
type PacketType uint8

// Packet types. A server answers PRELOGIN and LOGIN7 with PacketReply.
const (
	PacketSQLBatch     PacketType = 0x01 // SQL batch
	PacketRPC          PacketType = 0x03 // remote procedure call
	PacketReply        PacketType = 0x04 // tabular result: every server message
	PacketAttention    PacketType = 0x06 // attention signal; header only
	PacketBulkLoad     PacketType = 0x07 // bulk load data
	PacketFedAuthToken PacketType = 0x08 // federated authentication token
	PacketTransMgr     PacketType = 0x0E // transaction manager request
	PacketLogin7       PacketType = 0x10 // TDS 7 login
	PacketSSPI         PacketType = 0x11 // SSPI (integrated authentication) message
	PacketPrelogin     PacketType = 0x12 // PRELOGIN, and TLS handshake records in TDS 7.x
)

// Known reports whether t is one of the packet types defined above. MS-TDS
// says a receiver SHOULD disconnect on an unknown type; that decision is the
// caller's.
func (t PacketType) Known() bool {
	switch t {
	case PacketSQLBatch, PacketRPC, PacketReply, PacketAttention, PacketBulkLoad,
		PacketFedAuthToken, PacketTransMgr, PacketLogin7, PacketSSPI, PacketPrelogin:
		return true
	}
	return false
}

func (t PacketType) String() string {
	switch t {
	case PacketSQLBatch:
		return "SQLBatch"
	case PacketRPC:
		return "RPC"
	case PacketReply:
		return "Reply"
	case PacketAttention:
		return "Attention"
	case PacketBulkLoad:
		return "BulkLoad"
	case PacketFedAuthToken:
		return "FedAuthToken"
	case PacketTransMgr:
		return "TransMgr"
	case PacketLogin7:
		return "Login7"
	case PacketSSPI:
		return "SSPI"
	case PacketPrelogin:
		return "Prelogin"
	}
	return fmt.Sprintf("PacketType(0x%02X)", uint8(t))
}

// Status is the packet header's bit field (MS-TDS 2.2.3.1.2). Bits not
// defined here are unused and must be ignored.
type Status uint8

// Status bits.
const (
	// StatusEOM marks the last packet of a message.
	StatusEOM Status = 0x01
	// StatusIgnore (client to server, with StatusEOM) tells the server to
	// discard the message.
	StatusIgnore Status = 0x02
	// StatusResetConnection (client to server, first packet of a SQL batch,
	// RPC or transaction manager request) resets the session first.
	StatusResetConnection Status = 0x08
	// StatusResetConnectionSkipTran is StatusResetConnection that keeps the
	// transaction state.
	StatusResetConnectionSkipTran Status = 0x10
)

// Header is a decoded packet header. The zero value is a header-only packet
// of type 0 that does not end its message.
type Header struct {
	Type   PacketType // message type
	Status Status     // StatusEOM and friends
	// Length is the packet size including the header, big-endian on the
	// wire.
	Length uint16
	// SPID is the server process id (big-endian on the wire); clients send
	// 0.
	SPID uint16
	// PacketID numbers the packets of a message, modulo 256; receivers
	// ignore it.
	PacketID uint8
	// Window is unused and should be 0.
	Window uint8
}

// ParseHeader decodes the packet header at the start of b. It fails with
// ErrShortHeader if b holds fewer than HeaderLen bytes and with ErrBadLength
// if Length is smaller than HeaderLen. It does not check Length against a
// maximum packet size; Reader does.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("tds: header: %d bytes: %w", len(b), ErrShortHeader)
	}
	h := Header{
		Type:     PacketType(b[0]),
		Status:   Status(b[1]),
		Length:   binary.BigEndian.Uint16(b[2:4]),
		SPID:     binary.BigEndian.Uint16(b[4:6]),
		PacketID: b[6],
		Window:   b[7],
	}
	if h.Length < HeaderLen {
		return Header{}, fmt.Errorf("tds: header: length %d: %w", h.Length, ErrBadLength)
	}
	return h, nil
}

// EOM reports whether the packet is the last of its message.
func (h Header) EOM() bool { return h.Status&StatusEOM != 0 }

// PayloadLen is the number of payload bytes that follow the header, or 0
// when Length is smaller than HeaderLen.
func (h Header) PayloadLen() int {
	if h.Length < HeaderLen {
		return 0
	}
	return int(h.Length) - HeaderLen
}

// AppendTo appends the 8 encoded header bytes to b and returns the extended
// slice.
func (h Header) AppendTo(b []byte) []byte {
	b = append(b, byte(h.Type), byte(h.Status))
	b = binary.BigEndian.AppendUint16(b, h.Length)
	b = binary.BigEndian.AppendUint16(b, h.SPID)
	return append(b, h.PacketID, h.Window)
}

// putHeader writes h into b[:HeaderLen]; callers guarantee len(b) >= HeaderLen.
func putHeader(b []byte, h Header) {
	_ = b[HeaderLen-1]
	b[0] = byte(h.Type)
	b[1] = byte(h.Status)
	binary.BigEndian.PutUint16(b[2:4], h.Length)
	binary.BigEndian.PutUint16(b[4:6], h.SPID)
	b[6] = h.PacketID
	b[7] = h.Window
}

func (h Header) String() string {
	return fmt.Sprintf("%s status=0x%02X length=%d spid=%d id=%d", h.Type, uint8(h.Status), h.Length, h.SPID, h.PacketID)
}
