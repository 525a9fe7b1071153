package tds

import (
	"errors"
	"fmt"
)

// Errors returned by this package. They are wrapped with context naming the
// structure and field (for example "tds: prelogin: option 0x01: ..."), so
// test for them with errors.Is, never by comparing strings.
var (
	// ErrShortHeader means fewer than HeaderLen bytes were available for a
	// packet header.
	ErrShortHeader = errors.New("short packet header")
	// ErrBadLength means a packet header's Length field is smaller than the
	// header itself.
	ErrBadLength = errors.New("bad packet length")
	// ErrPacketTooLarge means a packet header announces more bytes than the
	// reader's maximum packet size.
	ErrPacketTooLarge = errors.New("packet larger than maximum packet size")
	// ErrMessageTooLarge means the packets of one message add up to more
	// than the reader's maximum message size.
	ErrMessageTooLarge = errors.New("message larger than maximum message size")
	// ErrMixedTypes means a packet of a multi-packet message carries a
	// different packet type than the first packet.
	ErrMixedTypes = errors.New("packet type changed within a message")
	// ErrInvalidPacketSize means a packet size outside MinPacketSize..MaxPacketSize
	// was requested.
	ErrInvalidPacketSize = errors.New("invalid packet size")

	// ErrTruncated means a structure ends before the length it declares.
	ErrTruncated = errors.New("truncated")
	// ErrOutOfRange means an offset or length points outside the data it
	// must lie in.
	ErrOutOfRange = errors.New("offset or length out of range")
	// ErrMalformed means bytes that do not follow the MS-TDS grammar, for
	// example an odd-length UCS-2 string or trailing bytes inside a token.
	ErrMalformed = errors.New("malformed")

	// ErrNoTerminator means a PRELOGIN option table, LOGIN7 FeatureExt
	// block or FEATUREEXTACK token is not ended by its 0xFF terminator.
	ErrNoTerminator = errors.New("missing 0xFF terminator")
	// ErrDuplicateOption means a PRELOGIN option appears twice.
	ErrDuplicateOption = errors.New("duplicate option")
	// ErrOverlap means the data of two PRELOGIN options overlap, or option
	// data overlaps the option table.
	ErrOverlap = errors.New("overlapping option data")
	// ErrOptionSize means a PRELOGIN option of fixed size has another
	// length.
	ErrOptionSize = errors.New("wrong option size")
	// ErrMissingVersion means a PRELOGIN message does not start with the
	// VERSION option, which MS-TDS 2.2.6.5 requires to be first.
	ErrMissingVersion = errors.New("VERSION option missing or not first")

	// ErrFieldTooLong means an encoder was given a value that does not fit
	// its length prefix (for example a B_VARCHAR longer than 255 UTF-16
	// code units) or a message whose offsets would exceed 16 bits.
	ErrFieldTooLong = errors.New("field too long")
	// ErrWrongToken means a token decoder was handed a token of another
	// type.
	ErrWrongToken = errors.New("wrong token type")
	// ErrUnsupportedToken is matched (via errors.Is) by every
	// *UnsupportedTokenError.
	ErrUnsupportedToken = errors.New("unsupported token")
)

// UnsupportedTokenError is returned by TokenScanner for a token whose size it
// cannot determine without column metadata (COLMETADATA, ROW, NBCROW,
// RETURNVALUE, ...) or whose type it does not know. Such tokens do not occur
// in a login reply.
type UnsupportedTokenError struct {
	Type   TokenType // the token type byte
	Offset int       // offset of the token type byte in the scanned stream
}

func (e *UnsupportedTokenError) Error() string {
	return fmt.Sprintf("tds: token stream: unsupported token %s at offset %d", e.Type, e.Offset)
}

// Unwrap makes errors.Is(err, ErrUnsupportedToken) true.
func (e *UnsupportedTokenError) Unwrap() error { return ErrUnsupportedToken }
