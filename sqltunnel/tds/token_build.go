package tds

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// ReplyBuilder encodes a server token stream, the payload of a reply
// message (PacketReply). Like bufio.Writer it keeps the first error: after a
// failed call the others do nothing and Bytes returns that error.
//
//	var rb tds.ReplyBuilder
//	rb.Version = login.TDSVersion
//	rb.Error(tds.ErrorInfo{Number: 18456, Class: 14, State: 1, Message: "Login failed."})
//	rb.Done(tds.Done{Status: tds.DoneError})
//	payload, err := rb.Bytes()
//
// The zero value is an empty stream for TDS 7.2 or later.
type ReplyBuilder struct {
	// Version selects the width of the DONE row count and the ERROR/INFO
	// line number: narrow for TDS 7.0/7.1 (Version.Pre72), wide otherwise.
	// Set it to the client's LOGIN7 TDSVersion; 0 means 7.2 or later.
	Version TDSVersion

	buf []byte
	err error
}

// Bytes returns the encoded stream, or the first error met. The slice
// aliases the builder's buffer until Reset.
func (b *ReplyBuilder) Bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.buf, nil
}

// Reset empties the builder and clears its error, keeping Version and the
// buffer's memory.
func (b *ReplyBuilder) Reset() { b.buf, b.err = b.buf[:0], nil }

// Append copies a complete token unchanged, for instance one returned by
// TokenScanner while forwarding or rewriting a reply.
func (b *ReplyBuilder) Append(raw []byte) {
	if b.err == nil {
		b.buf = append(b.buf, raw...)
	}
}

// lenToken appends a token with a USHORT length prefix whose body body
// appends; it fails with ErrFieldTooLong if the body exceeds 65535 bytes.
func (b *ReplyBuilder) lenToken(t TokenType, body func([]byte) ([]byte, error)) {
	if b.err != nil {
		return
	}
	start := len(b.buf)
	out, err := body(append(b.buf, byte(t), 0, 0))
	if err == nil && len(out)-start-3 > 0xFFFF {
		err = fmt.Errorf("%d bytes: %w", len(out)-start-3, ErrFieldTooLong)
	}
	if err != nil {
		b.buf, b.err = b.buf[:start], fmt.Errorf("tds: %s: %w", t, err)
		return
	}
	binary.LittleEndian.PutUint16(out[start+1:], uint16(len(out)-start-3))
	b.buf = out
}

// Error appends an ERROR token (MS-TDS 2.2.7.10). Follow it with a Done
// carrying DoneError. A Class of 20 or more makes the client drop the
// connection.
func (b *ReplyBuilder) Error(e ErrorInfo) { b.lenToken(TokenError, b.errorBody(e)) }

// Info appends an INFO token (MS-TDS 2.2.7.13).
func (b *ReplyBuilder) Info(e ErrorInfo) { b.lenToken(TokenInfo, b.errorBody(e)) }

func (b *ReplyBuilder) errorBody(e ErrorInfo) func([]byte) ([]byte, error) {
	return func(out []byte) ([]byte, error) {
		out = binary.LittleEndian.AppendUint32(out, uint32(e.Number))
		out = append(out, e.State, e.Class)
		out, err := appendUSVarChar(out, e.Message, "message")
		if err != nil {
			return out, err
		}
		if out, err = appendBVarChar(out, e.ServerName, "server name"); err != nil {
			return out, err
		}
		if out, err = appendBVarChar(out, e.ProcName, "proc name"); err != nil {
			return out, err
		}
		if b.Version.Pre72() {
			return binary.LittleEndian.AppendUint16(out, uint16(e.LineNumber)), nil
		}
		return binary.LittleEndian.AppendUint32(out, uint32(e.LineNumber)), nil
	}
}

// LoginAck appends a LOGINACK token (MS-TDS 2.2.7.14); a.TDSVersion is
// written big-endian. ProgVersion.SubBuild is not encoded.
func (b *ReplyBuilder) LoginAck(a LoginAck) {
	b.lenToken(TokenLoginAck, func(out []byte) ([]byte, error) {
		out = append(out, a.Interface)
		out = binary.BigEndian.AppendUint32(out, uint32(a.TDSVersion))
		out, err := appendBVarChar(out, a.ProgName, "prog name")
		if err != nil {
			return out, err
		}
		v := a.ProgVersion
		return append(out, v.Major, v.Minor, byte(v.Build>>8), byte(v.Build)), nil
	})
}

// Done appends a DONE, DONEPROC or DONEINPROC token (d.Token; 0 is DONE).
func (b *ReplyBuilder) Done(d Done) {
	if b.err != nil {
		return
	}
	t := d.Token
	switch t {
	case 0:
		t = TokenDone
	case TokenDone, TokenDoneProc, TokenDoneInProc:
	default:
		b.err = fmt.Errorf("tds: DONE: token %s: %w", t, ErrWrongToken)
		return
	}
	b.buf = append(b.buf, byte(t))
	b.buf = binary.LittleEndian.AppendUint16(b.buf, uint16(d.Status))
	b.buf = binary.LittleEndian.AppendUint16(b.buf, d.CurCmd)
	if b.Version.Pre72() {
		b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(d.RowCount))
	} else {
		b.buf = binary.LittleEndian.AppendUint64(b.buf, d.RowCount)
	}
}

// envStrings appends an ENVCHANGE whose values are B_VARCHAR strings.
func (b *ReplyBuilder) envStrings(t EnvChangeType, newValue, oldValue string) {
	b.lenToken(TokenEnvChange, func(out []byte) ([]byte, error) {
		out, err := appendBVarChar(append(out, byte(t)), newValue, "new value")
		if err != nil {
			return out, err
		}
		return appendBVarChar(out, oldValue, "old value")
	})
}

// EnvDatabase appends a type 1 ENVCHANGE: the current database changed.
func (b *ReplyBuilder) EnvDatabase(newName, oldName string) {
	b.envStrings(EnvDatabase, newName, oldName)
}

// EnvLanguage appends a type 2 ENVCHANGE: the session language changed.
func (b *ReplyBuilder) EnvLanguage(newName, oldName string) {
	b.envStrings(EnvLanguage, newName, oldName)
}

// EnvPacketSize appends a type 4 ENVCHANGE with the sizes as decimal
// strings: both sides switch to newSize after the login reply. Sizes outside
// 0..MaxPacketSize fail with ErrInvalidPacketSize.
func (b *ReplyBuilder) EnvPacketSize(newSize, oldSize int) {
	if b.err != nil {
		return
	}
	if newSize < 0 || newSize > MaxPacketSize || oldSize < 0 || oldSize > MaxPacketSize {
		b.err = fmt.Errorf("tds: ENVCHANGE packet size %d (old %d): %w", newSize, oldSize, ErrInvalidPacketSize)
		return
	}
	b.envStrings(EnvPacketSize, strconv.Itoa(newSize), strconv.Itoa(oldSize))
}

// EnvCollation appends a type 7 ENVCHANGE with B_VARBYTE values: a 5-byte
// SQL collation (LCID and flags, then sort id) and usually an empty old one.
func (b *ReplyBuilder) EnvCollation(newValue, oldValue []byte) {
	b.lenToken(TokenEnvChange, func(out []byte) ([]byte, error) {
		if len(newValue) > 0xFF || len(oldValue) > 0xFF {
			return out, fmt.Errorf("collation: %w", ErrFieldTooLong)
		}
		out = append(out, byte(EnvCollation), byte(len(newValue)))
		out = append(out, newValue...)
		out = append(out, byte(len(oldValue)))
		return append(out, oldValue...), nil
	})
}

// EnvRouting appends a routing ENVCHANGE: type 21 when r.Enhanced, else type
// 20 (r.Database is then ignored). The old value is the empty USHORT.
func (b *ReplyBuilder) EnvRouting(r Routing) {
	typ := EnvRouting
	if r.Enhanced {
		typ = EnvEnhancedRouting
	}
	b.lenToken(TokenEnvChange, func(out []byte) ([]byte, error) {
		out = append(out, byte(typ), 0, 0) // RoutingDataValueLength set below
		at := len(out)
		out = append(out, r.Protocol)
		out = binary.LittleEndian.AppendUint16(out, r.Port)
		out, err := appendUSVarChar(out, r.Server, "alternate server")
		if err == nil && r.Enhanced {
			out, err = appendUSVarChar(out, r.Database, "alternate database")
		}
		if err != nil {
			return out, err
		}
		n := len(out) - at
		if n > 0xFFFF {
			return out, fmt.Errorf("routing data of %d bytes: %w", n, ErrFieldTooLong)
		}
		binary.LittleEndian.PutUint16(out[at-2:], uint16(n))
		return append(out, 0, 0), nil
	})
}

// FeatureExtAck appends a FEATUREEXTACK token (MS-TDS 2.2.7.11) listing acks
// in order, then the terminator.
func (b *ReplyBuilder) FeatureExtAck(acks []FeatureAck) {
	if b.err != nil {
		return
	}
	start := len(b.buf)
	out := append(b.buf, byte(TokenFeatureExtAck))
	for _, a := range acks {
		if a.ID == FeatureTerminator || uint64(len(a.Data)) > 0xFFFFFFFF {
			b.buf, b.err = out[:start], fmt.Errorf("tds: FEATUREEXTACK: feature 0x%02X: %w", uint8(a.ID), ErrMalformed)
			return
		}
		out = append(out, byte(a.ID))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(a.Data)))
		out = append(out, a.Data...)
	}
	b.buf = append(out, byte(FeatureTerminator))
}

// ErrorReply returns the payload of a reply message carrying one ERROR token
// and a DONE with DoneError: what the gateway sends a client whose login it
// refuses. ver is the client's LOGIN7 TDSVersion (0 for 7.2 or later). An
// ERROR is only understood as a reply to LOGIN7 or later; a client reads a
// PRELOGIN reply starting with 0xAA as coming from an ancient server.
func ErrorReply(ver TDSVersion, e ErrorInfo) ([]byte, error) {
	b := ReplyBuilder{Version: ver}
	b.Error(e)
	b.Done(Done{Status: DoneError})
	return b.Bytes()
}
