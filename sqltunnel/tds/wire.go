package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// cursor reads little-endian values from b with a sticky error: once a read
// would pass the end of b, err is set to ErrTruncated and every later read
// returns zero values. No read can index outside b.
type cursor struct {
	b   []byte
	off int
	err error
}

// take returns the next n bytes, or nil and a sticky ErrTruncated when fewer
// than n remain (n is never trusted: it may come from the wire).
func (c *cursor) take(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || n > len(c.b)-c.off {
		c.err = ErrTruncated
		return nil
	}
	p := c.b[c.off : c.off+n : c.off+n]
	c.off += n
	return p
}

func (c *cursor) u8() uint8 {
	if p := c.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (c *cursor) u16() uint16 {
	if p := c.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if p := c.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// bVarChar reads a B_VARCHAR: a byte count of UTF-16 code units, then the
// UCS-2LE text.
func (c *cursor) bVarChar() string { return c.ucs2(int(c.u8())) }

// usVarChar reads a US_VARCHAR: a USHORT count of UTF-16 code units, then
// the UCS-2LE text.
func (c *cursor) usVarChar() string { return c.ucs2(int(c.u16())) }

func (c *cursor) ucs2(units int) string {
	p := c.take(2 * units)
	if c.err != nil {
		return ""
	}
	s, _ := decodeUCS2(p) // even length by construction
	return s
}

// rest returns the unread bytes.
func (c *cursor) rest() []byte { return c.take(len(c.b) - c.off) }

// done returns the sticky error, or ErrMalformed if bytes remain unread.
func (c *cursor) done() error {
	if c.err != nil {
		return c.err
	}
	if c.off != len(c.b) {
		return fmt.Errorf("%d trailing bytes: %w", len(c.b)-c.off, ErrMalformed)
	}
	return nil
}

// decodeUCS2 decodes UTF-16LE text (MS-TDS calls it UCS-2; SQL Server sends
// surrogate pairs for supplementary characters). Unpaired surrogates become
// U+FFFD. An odd byte count is ErrMalformed.
func decodeUCS2(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("UCS-2 string of %d bytes: %w", len(b), ErrMalformed)
	}
	ascii := true
	for i := 0; i < len(b); i += 2 {
		if b[i+1] != 0 || b[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		var sb strings.Builder
		sb.Grow(len(b) / 2)
		for i := 0; i < len(b); i += 2 {
			sb.WriteByte(b[i])
		}
		return sb.String(), nil
	}
	out := make([]byte, 0, len(b)*3/2)
	for i := 0; i < len(b); i += 2 {
		r := rune(binary.LittleEndian.Uint16(b[i:]))
		if utf16.IsSurrogate(r) && i+3 < len(b) {
			if dec := utf16.DecodeRune(r, rune(binary.LittleEndian.Uint16(b[i+2:]))); dec != utf8.RuneError {
				out = utf8.AppendRune(out, dec)
				i += 2
				continue
			}
		}
		if utf16.IsSurrogate(r) {
			r = utf8.RuneError
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out), nil
}

// ucs2Len returns the number of UTF-16 code units appendUCS2 writes for s.
func ucs2Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// appendUCS2 appends s as UTF-16LE. Invalid UTF-8 is written as U+FFFD.
func appendUCS2(b []byte, s string) []byte {
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = binary.LittleEndian.AppendUint16(b, uint16(r1))
			b = binary.LittleEndian.AppendUint16(b, uint16(r2))
			continue
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return b
}

// appendBVarChar appends s as a B_VARCHAR; what names the field in errors.
func appendBVarChar(b []byte, s, what string) ([]byte, error) {
	n := ucs2Len(s)
	if n > 0xFF {
		return b, fmt.Errorf("%s: %d UTF-16 units > 255: %w", what, n, ErrFieldTooLong)
	}
	return appendUCS2(append(b, byte(n)), s), nil
}

// appendUSVarChar appends s as a US_VARCHAR; what names the field in errors.
func appendUSVarChar(b []byte, s, what string) ([]byte, error) {
	n := ucs2Len(s)
	if n > 0xFFFF {
		return b, fmt.Errorf("%s: %d UTF-16 units > 65535: %w", what, n, ErrFieldTooLong)
	}
	return appendUCS2(binary.LittleEndian.AppendUint16(b, uint16(n)), s), nil
}
