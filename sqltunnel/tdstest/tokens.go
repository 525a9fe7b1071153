package tdstest

import (
	"encoding/binary"
	"unicode/utf16"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Data types this server sends (MS-TDS 2.2.5.4).
const (
	typeInt4         = 0x38 // INT, fixed length
	typeBigVarBinary = 0xA5 // VARBINARY(n) or VARBINARY(MAX)
	typeBigVarChar   = 0xA7 // VARCHAR(n) or VARCHAR(MAX)
	typeNVarChar     = 0xE7 // NVARCHAR(n) or NVARCHAR(MAX)
)

// Column flags (MS-TDS 2.2.7.4).
const (
	flagNullable = 0x0001
)

const (
	// maxShortLen is the largest non-MAX VARBINARY/VARCHAR/NVARCHAR size in
	// bytes; larger values are MAX types sent as PLP.
	maxShortLen = 8000
	// plpMaxLen is the USHORT max length that marks a MAX (PLP) type.
	plpMaxLen = 0xFFFF
	// plpChunk is the size of the PLP chunks this server sends.
	plpChunk = 8192
)

// curCmdSelect is the DONE CurCmd of a SELECT (MS-TDS 4.7 example).
const curCmdSelect = 0xC1

// collationDefault is SQL_Latin1_General_CP1_CI_AS as SQL Server sends it
// (MS-TDS 4.4 example): LCID 0x0409 with flags 0xD0, version 0, sort id 52.
var collationDefault = []byte{0x09, 0x04, 0xD0, 0x00, 0x34}

// column describes one result column.
type column struct {
	name   string
	typ    byte
	maxLen int // bytes, for variable-length types; > maxShortLen means MAX
	flags  uint16
}

func (c column) plp() bool { return c.typ != typeInt4 && c.typ != typeBit && c.maxLen > maxShortLen }

// appendColMetadata appends a COLMETADATA token (MS-TDS 2.2.7.4). UserType is
// a USHORT before TDS 7.2 and a ULONG since.
func appendColMetadata(b []byte, ver tds.TDSVersion, cols []column) []byte {
	b = append(b, byte(tds.TokenColMetadata))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		if ver.Pre72() {
			b = append(b, 0, 0)
		} else {
			b = append(b, 0, 0, 0, 0)
		}
		b = binary.LittleEndian.AppendUint16(b, c.flags)
		b = append(b, c.typ)
		switch c.typ {
		case typeInt4, typeBit:
		case typeBigVarBinary:
			b = binary.LittleEndian.AppendUint16(b, typeMaxLen(c))
		case typeBigVarChar, typeNVarChar:
			b = binary.LittleEndian.AppendUint16(b, typeMaxLen(c))
			b = append(b, collationDefault...)
		}
		b = appendBVarChar(b, c.name)
	}
	return b
}

func typeMaxLen(c column) uint16 {
	if c.plp() {
		return plpMaxLen
	}
	return uint16(c.maxLen)
}

// appendBVarChar appends s as a B_VARCHAR, cut to 255 UTF-16 units (only
// column names this package chooses go through it).
func appendBVarChar(b []byte, s string) []byte {
	u := utf16.Encode([]rune(s))
	u = u[:min(len(u), 255)]
	b = append(b, byte(len(u)))
	for _, x := range u {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

// appendUCS2 appends s as UTF-16LE.
func appendUCS2(b []byte, s string) []byte {
	for _, x := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

// appendInt4Row appends a ROW token with one INT value.
func appendInt4Row(b []byte, v int32) []byte {
	b = append(b, byte(tds.TokenRow))
	return binary.LittleEndian.AppendUint32(b, uint32(v))
}

// appendShortValue appends a non-MAX variable-length value: USHORT length,
// then the bytes.
func appendShortValue(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// appendPLPHeader appends the total length of a PLP value (MS-TDS 2.2.5.2.3).
func appendPLPHeader(b []byte, total uint64) []byte {
	return binary.LittleEndian.AppendUint64(b, total)
}

// appendPLPChunk appends one PLP chunk: ULONG length, then the bytes. A
// zero-length chunk is the terminator.
func appendPLPChunk(b, chunk []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(chunk)))
	return append(b, chunk...)
}

// appendReturnStatus appends a RETURNSTATUS token (MS-TDS 2.2.7.18).
func appendReturnStatus(b []byte, v int32) []byte {
	b = append(b, byte(tds.TokenReturnStatus))
	return binary.LittleEndian.AppendUint32(b, uint32(v))
}

// appendDone appends a DONE, DONEPROC or DONEINPROC token with the row count
// width of ver (MS-TDS 2.2.7.6).
func appendDone(b []byte, ver tds.TDSVersion, d tds.Done) []byte {
	t := d.Token
	if t == 0 {
		t = tds.TokenDone
	}
	b = append(b, byte(t))
	b = binary.LittleEndian.AppendUint16(b, uint16(d.Status))
	b = binary.LittleEndian.AppendUint16(b, d.CurCmd)
	if ver.Pre72() {
		return binary.LittleEndian.AppendUint32(b, uint32(d.RowCount))
	}
	return binary.LittleEndian.AppendUint64(b, d.RowCount)
}
