package tdstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// errMalformedRequest wraps every request decoding error.
var errMalformedRequest = errors.New("malformed request")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errMalformedRequest)
}

// procExecuteSQL is sp_executesql's well-known ProcID (MS-TDS 2.2.6.6).
const procExecuteSQL = 10

// wellKnownProcs names the ProcIDs of MS-TDS 2.2.6.6, for records and errors.
var wellKnownProcs = map[uint16]string{
	1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute",
	5: "sp_cursorprepexec", 6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption",
	9: "sp_cursorclose", 10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute",
	13: "sp_prepexec", 14: "sp_prepexecrpc", 15: "sp_unprepare",
}

// skipAllHeaders returns payload without its ALL_HEADERS prefix (MS-TDS
// 2.2.5.3), which SQL batches and RPCs carry since TDS 7.2.
func skipAllHeaders(payload []byte, ver tds.TDSVersion) ([]byte, error) {
	if ver.Pre72() {
		return payload, nil
	}
	if len(payload) < 4 {
		return nil, malformed("ALL_HEADERS: %d bytes", len(payload))
	}
	total := binary.LittleEndian.Uint32(payload)
	if total < 4 || uint64(total) > uint64(len(payload)) {
		return nil, malformed("ALL_HEADERS length %d of %d bytes", total, len(payload))
	}
	return payload[total:], nil
}

// decodeUCS2 decodes UTF-16LE; an odd byte count is malformed.
func decodeUCS2(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", malformed("UCS-2 text of %d bytes", len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// batchText decodes a SQL batch payload.
func batchText(payload []byte, ver tds.TDSVersion) (string, error) {
	b, err := skipAllHeaders(payload, ver)
	if err != nil {
		return "", err
	}
	return decodeUCS2(b)
}

// rpcCall is the part of an RPC request this server looks at.
type rpcCall struct {
	proc string // procedure name, lower-cased for well-known ids
	// stmt is the first parameter when it is character data, with ok set.
	stmt   string
	stmtOK bool
}

// parseRPC decodes the procedure of an RPC request (MS-TDS 2.2.6.6) and its
// first parameter when that is NVARCHAR or NCHAR, as sp_executesql's
// statement is. Later parameters and further RPCs in the same request are
// ignored. Every length is checked against the payload.
func parseRPC(payload []byte, ver tds.TDSVersion) (rpcCall, error) {
	b, err := skipAllHeaders(payload, ver)
	if err != nil {
		return rpcCall{}, err
	}
	c := reader{b: b}
	var call rpcCall
	nameLen := c.u16()
	if nameLen == 0xFFFF {
		id := c.u16()
		if name, ok := wellKnownProcs[id]; ok {
			call.proc = name
		} else {
			call.proc = fmt.Sprintf("procid %d", id)
		}
	} else {
		name, err := decodeUCS2(c.take(2 * int(nameLen)))
		if err != nil {
			return rpcCall{}, err
		}
		call.proc = name
	}
	c.u16() // OptionFlags
	if c.err != nil {
		return rpcCall{}, c.err
	}
	if c.left() == 0 {
		return call, nil // no parameters
	}
	c.take(2 * int(c.u8())) // ParamName (B_VARCHAR)
	c.u8()                  // StatusFlags
	typ := c.u8()
	if c.err != nil {
		return rpcCall{}, c.err
	}
	if typ != typeNVarChar && typ != 0xEF { // NCHAR
		return call, nil // not character data: no statement
	}
	maxLen := c.u16()
	c.take(5) // COLLATION
	var raw []byte
	if typ == typeNVarChar && maxLen == plpMaxLen {
		raw = c.plp()
	} else {
		n := c.u16()
		if n != 0xFFFF { // 0xFFFF is NULL
			raw = c.take(int(n))
		}
	}
	if c.err != nil {
		return rpcCall{}, c.err
	}
	call.stmt, err = decodeUCS2(raw)
	if err != nil {
		return rpcCall{}, err
	}
	call.stmtOK = true
	return call, nil
}

// isExecuteSQL reports whether proc names sp_executesql.
func isExecuteSQL(proc string) bool {
	p := strings.ToLower(proc)
	p = strings.TrimPrefix(p, "sys.")
	p = strings.TrimPrefix(p, "dbo.")
	return p == "sp_executesql"
}

// reader reads little-endian values with a sticky error; nothing is read
// past the end of b.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.err = malformed("%d bytes wanted at offset %d of %d", n, r.off, len(r.b))
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// plp reads a PLP value (MS-TDS 2.2.5.2.3): total length (or NULL, or
// unknown), then chunks up to a zero-length terminator. NULL is nil.
func (r *reader) plp() []byte {
	const plpNull, plpUnknown = 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFE
	total := r.u64()
	if r.err != nil || total == plpNull {
		return nil
	}
	if total != plpUnknown && total > uint64(r.left()) {
		r.err = malformed("PLP length %d of %d bytes", total, r.left())
		return nil
	}
	var out []byte
	for {
		n := r.u32()
		if r.err != nil || n == 0 {
			break
		}
		if uint64(n) > uint64(r.left()) {
			r.err = malformed("PLP chunk of %d bytes, %d left", n, r.left())
			break
		}
		out = append(out, r.take(int(n))...)
	}
	if r.err == nil && total != plpUnknown && uint64(len(out)) != total {
		r.err = malformed("PLP value of %d bytes, header says %d", len(out), total)
	}
	if out == nil {
		out = []byte{}
	}
	return out
}
