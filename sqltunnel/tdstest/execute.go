package tdstest

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Value patterns: row r of tdstest.rows holds bytes (r+i) mod 251, row r of
// tdstest.nrows the letters 'a' + (r+i) mod 26. Each table is long enough
// that any value chunk (at most plpChunk bytes) is one contiguous slice.
var (
	binPattern  = makeBinPattern()
	textPattern = makeTextPattern()
)

func makeBinPattern() []byte {
	b := make([]byte, 251+plpChunk)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func makeTextPattern() []byte {
	b := make([]byte, 0, 2*26+plpChunk)
	for i := 0; len(b) < cap(b); i++ {
		b = append(b, byte('a'+i%26), 0)
	}
	return b
}

// valueChunk returns bytes off..off+n of the value in row row (n <=
// plpChunk; for nrows off and n are even).
func valueChunk(kind stmtKind, row int64, off, n int) []byte {
	if kind == stmtNRows {
		start := int((row + int64(off/2)) % 26)
		return textPattern[2*start : 2*start+n]
	}
	start := int((row + int64(off)) % 251)
	return binPattern[start : start+n]
}

// execute runs one statement, from a SQL batch or sp_executesql (rpc), and
// writes the whole reply. idx is the request's index in the session record.
func (ss *session) execute(text string, rpc bool, idx int) error {
	if ss.cfg.Faults.OversizedPacket && !ss.oversizedDone {
		ss.oversizedDone = true
		if err := ss.oversizedPadding(); err != nil {
			return err
		}
	}
	if ss.attentionPending() {
		// Canceled before it started.
		ss.markCanceled(idx)
		return ss.interrupt()
	}

	st := parseStatement(text)
	if (st.kind == stmtRows || st.kind == stmtNRows) && st.m > maxShortLen && ss.ver.Pre72() && st.err == "" {
		st.err = "values over 8000 bytes need TDS 7.2 or later"
	}
	if st.kind == stmtUnknown || st.err != "" {
		msg := "tdstest: " + st.err
		if st.err == "" {
			msg = fmt.Sprintf("tdstest: unsupported batch %q", truncate(strings.TrimSpace(text), 100))
		}
		e := tds.ErrorInfo{Number: 156, State: 1, Class: 15, Message: msg}
		if rpc {
			return ss.rpcError(e)
		}
		return ss.batchError(e)
	}

	done := tds.Done{Token: tds.TokenDone}
	if rpc {
		done = tds.Done{Token: tds.TokenDoneInProc, Status: tds.DoneMore}
	}
	var (
		canceled bool
		err      error
		b        []byte
	)
	switch st.kind {
	case stmtEmpty, stmtSet, stmtSelectInt, stmtSelectVersion, stmtScalars, stmtCatalog:
		_, err = ss.w.Write(ss.appendSimple(nil, st, done))
	case stmtBatch:
		// One result per statement, each DONE but the last with DONE_MORE.
		for i, sub := range st.batch {
			d := done
			if i < len(st.batch)-1 {
				d.Status |= tds.DoneMore
			}
			b = ss.appendSimple(b, sub, d)
		}
		_, err = ss.w.Write(b)
	case stmtRows, stmtNRows:
		canceled, err = ss.streamRows(st, done)
	case stmtWaitFor:
		if canceled, err = ss.waitFor(st.delay); err == nil && !canceled {
			_, err = ss.w.Write(appendDone(nil, ss.ver, done))
		}
	}
	if err != nil {
		return err
	}
	if canceled {
		ss.markCanceled(idx)
		return ss.interrupt()
	}
	if rpc {
		b = appendReturnStatus(b[:0], 0)
		b = appendDone(b, ss.ver, tds.Done{Token: tds.TokenDoneProc})
		if _, err := ss.w.Write(b); err != nil {
			return err
		}
	}
	return ss.w.end()
}

// appendSimple appends the whole answer of a simple statement (see
// statement.simple), ending with done.
func (ss *session) appendSimple(b []byte, st statement, done tds.Done) []byte {
	switch st.kind {
	case stmtSelectInt:
		b = appendColMetadata(b, ss.ver, []column{{typ: typeInt4}})
		b = appendInt4Row(b, int32(st.n))
		return selectDone(b, ss.ver, done, 1)
	case stmtSelectVersion:
		v := utf16.Encode([]rune(ss.cfg.version()))
		v = v[:min(len(v), maxShortLen/2)]
		b = appendColMetadata(b, ss.ver, []column{{typ: typeNVarChar, maxLen: max(600, 2*len(v)), flags: flagNullable}})
		b = append(b, byte(tds.TokenRow))
		b = appendShortValue(b, appendUCS2(nil, string(utf16.Decode(v))))
		return selectDone(b, ss.ver, done, 1)
	case stmtScalars:
		return ss.appendScalars(b, st.exprs, done)
	case stmtCatalog:
		return ss.appendCatalog(b, st.catalog, done)
	}
	return appendDone(b, ss.ver, done) // empty, SET
}

// selectDone appends the DONE of a SELECT that returned rows rows.
func selectDone(b []byte, ver tds.TDSVersion, d tds.Done, rows uint64) []byte {
	d.Status |= tds.DoneCount
	d.CurCmd = curCmdSelect
	d.RowCount = rows
	return appendDone(b, ver, d)
}

// streamRows writes tdstest.rows or tdstest.nrows row by row, stopping at a
// row boundary when an attention arrives (reported as canceled).
func (ss *session) streamRows(st statement, done tds.Done) (canceled bool, err error) {
	col := column{name: "data", typ: typeBigVarBinary, maxLen: max(st.m, 1), flags: flagNullable}
	if st.kind == stmtNRows {
		col.typ = typeNVarChar
	}
	scratch := appendColMetadata(make([]byte, 0, 64), ss.ver, []column{col})
	if _, err := ss.w.Write(scratch); err != nil {
		return false, err
	}
	var rows uint64
	for r := int64(0); r < st.n; r++ {
		if ss.attentionPending() {
			return true, nil
		}
		if r%256 == 0 && ss.srv.ctx.Err() != nil {
			return false, errServerClosing
		}
		if err := ss.writeValue(scratch[:0], col, st.kind, r, st.m); err != nil {
			return false, err
		}
		rows++
	}
	_, err = ss.w.Write(selectDone(scratch[:0], ss.ver, done, rows))
	return false, err
}

// writeValue writes one ROW token holding an m-byte value of row r.
func (ss *session) writeValue(scratch []byte, col column, kind stmtKind, r int64, m int) error {
	b := append(scratch, byte(tds.TokenRow))
	if !col.plp() {
		b = appendShortValue(b, valueChunk(kind, r, 0, m))
		_, err := ss.w.Write(b)
		return err
	}
	b = appendPLPHeader(b, uint64(m))
	if _, err := ss.w.Write(b); err != nil {
		return err
	}
	for off := 0; off < m; {
		n := min(plpChunk, m-off)
		b = binary.LittleEndian.AppendUint32(scratch[:0], uint32(n)) // PLP_CHUNK length
		if _, err := ss.w.Write(b); err != nil {
			return err
		}
		if _, err := ss.w.Write(valueChunk(kind, r, off, n)); err != nil {
			return err
		}
		off += n
	}
	_, err := ss.w.Write(appendPLPChunk(scratch[:0], nil)) // terminator
	return err
}

// waitFor waits for d, or until an attention (canceled), the client leaving
// or Close.
func (ss *session) waitFor(d time.Duration) (canceled bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		if ss.attentionPending() {
			return true, nil
		}
		select {
		case <-t.C:
			return false, nil
		case <-ss.attnCh:
		case <-ss.gone:
			return false, io.EOF
		case <-ss.srv.ctx.Done():
			return false, errServerClosing
		}
	}
}

// oversizedPadding starts the reply with an INFO message longer than a
// packet and makes its first packet one byte too long
// (Faults.OversizedPacket).
func (ss *session) oversizedPadding() error {
	ss.w.oversize = true
	var rb tds.ReplyBuilder
	rb.Version = ss.ver
	rb.Info(tds.ErrorInfo{
		Number: 50000, State: 1, Class: 0, ServerName: ss.cfg.serverName(),
		Message: "tdstest: oversized packet fault " + strings.Repeat("x", ss.w.size/2+16),
	})
	b, err := rb.Bytes()
	if err != nil {
		return err
	}
	_, err = ss.w.Write(b)
	return err
}
