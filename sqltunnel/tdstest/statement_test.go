package tdstest

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

func TestParseStatement(t *testing.T) {
	tests := []struct {
		text  string
		kind  stmtKind
		n     int64
		m     int
		delay time.Duration
		err   bool
	}{
		{"SELECT 1", stmtSelectInt, 1, 0, 0, false},
		{"  select   -42 ;\n", stmtSelectInt, -42, 0, 0, false},
		{"SELECT 9999999999", stmtUnknown, 0, 0, 0, true},
		{"SELECT @@VERSION", stmtSelectVersion, 0, 0, 0, false},
		{"select @@version;", stmtSelectVersion, 0, 0, 0, false},
		{"SELECT * FROM tdstest.rows(10, 100)", stmtRows, 10, 100, 0, false},
		{"select * from TDSTEST.ROWS( 0 ,0 )", stmtRows, 0, 0, 0, false},
		{"SELECT * FROM tdstest.nrows(2, 8)", stmtNRows, 2, 8, 0, false},
		{"SELECT * FROM tdstest.nrows(2, 7)", stmtNRows, 2, 7, 0, true},
		{"SELECT * FROM tdstest.rows(1, 2000000000)", stmtRows, 1, 2000000000, 0, true},
		{"WAITFOR DELAY '00:00:05'", stmtWaitFor, 0, 0, 5 * time.Second, false},
		{"waitfor delay '01:02:03.5'", stmtWaitFor, 0, 0, time.Hour + 2*time.Minute + 3*time.Second + 500*time.Millisecond, false},
		{"WAITFOR DELAY '00:61:00'", stmtWaitFor, 0, 0, 0, true},
		{"WAITFOR DELAY '24:00:00'", stmtWaitFor, 0, 0, 0, true},
		{"set textsize 2147483647\nset quoted_identifier on", stmtBatch, 0, 0, 0, false},
		{"SELECT @@MAX_PRECISION\r\nSET TRANSACTION ISOLATION LEVEL READ COMMITTED\r\nSET IMPLICIT_TRANSACTIONS OFF", stmtBatch, 0, 0, 0, false},
		{"select @@spid, db_name() as db, serverproperty('ProductVersion') [v]", stmtScalars, 0, 0, 0, false},
		{"SELECT @@TRANCOUNT; SELECT @@SERVERNAME; SET NOCOUNT ON", stmtBatch, 0, 0, 0, false},
		{"SET NOCOUNT ON\nSELECT * FROM tdstest.rows(1, 1)", stmtUnknown, 0, 0, 0, false},
		{"SELECT @@NOSUCHTHING", stmtUnknown, 0, 0, 0, false},
		{"SET NOCOUNT ON", stmtSet, 0, 0, 0, false},
		{"   ", stmtEmpty, 0, 0, 0, false},
		{"SELECT name FROM sys.databases", stmtCatalog, 0, 0, 0, false},
		{"SELECT name, secret FROM sys.databases", stmtUnknown, 0, 0, 0, false},
		{"SELECT name FROM sys.tables", stmtUnknown, 0, 0, 0, false},
		{"SELECT 1; DROP TABLE x", stmtUnknown, 0, 0, 0, false},
		{"settings", stmtUnknown, 0, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			st := parseStatement(tc.text)
			if st.kind != tc.kind || (st.err != "") != tc.err {
				t.Fatalf("kind %d err %q, want kind %d err %t", st.kind, st.err, tc.kind, tc.err)
			}
			if tc.err {
				return
			}
			if st.n != tc.n || st.m != tc.m || st.delay != tc.delay {
				t.Errorf("got n=%d m=%d delay=%v", st.n, st.m, st.delay)
			}
		})
	}
}

// rpcPayload encodes an RPC request (TDS 7.2+) calling proc (by ProcID when
// id is non-zero) with an NVARCHAR first parameter, as go-mssqldb and
// tedious send sp_executesql; plp selects NVARCHAR(MAX).
func rpcPayload(id uint16, proc, stmt string, plp bool) []byte {
	b := batchPayload("")
	if id != 0 {
		b = binary.LittleEndian.AppendUint16(b, 0xFFFF)
		b = binary.LittleEndian.AppendUint16(b, id)
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(proc)))
		b = appendUCS2(b, proc)
	}
	b = binary.LittleEndian.AppendUint16(b, 0) // option flags
	b = appendBVarChar(b, "@statement")
	b = append(b, 0, typeNVarChar)
	text := appendUCS2(nil, stmt)
	if plp {
		b = binary.LittleEndian.AppendUint16(b, plpMaxLen)
		b = append(b, collationDefault...)
		b = appendPLPHeader(b, uint64(len(text)))
		b = appendPLPChunk(b, text)
		b = appendPLPChunk(b, nil)
	} else {
		b = binary.LittleEndian.AppendUint16(b, 8000)
		b = append(b, collationDefault...)
		b = appendShortValue(b, text)
	}
	// A second parameter, ignored.
	b = appendBVarChar(b, "@params")
	b = append(b, 0, typeNVarChar)
	b = binary.LittleEndian.AppendUint16(b, 8000)
	b = append(b, collationDefault...)
	return appendShortValue(b, nil)
}

func TestParseRPC(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		proc    string
		stmt    string
		ok      bool
	}{
		{"procid", rpcPayload(procExecuteSQL, "", "SELECT 1", false), "sp_executesql", "SELECT 1", true},
		{"name", rpcPayload(0, "sp_executesql", "SELECT @@VERSION", false), "sp_executesql", "SELECT @@VERSION", true},
		{"plp", rpcPayload(procExecuteSQL, "", "SELECT 2", true), "sp_executesql", "SELECT 2", true},
		{"other proc", rpcPayload(0, "dbo.sp_who", "x", false), "dbo.sp_who", "x", true},
		{"prepexec", rpcPayload(13, "", "x", false), "sp_prepexec", "x", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			call, err := parseRPC(tc.payload, tds.TDS74)
			if err != nil {
				t.Fatal(err)
			}
			if call.proc != tc.proc || call.stmt != tc.stmt || call.stmtOK != tc.ok {
				t.Errorf("got %+v", call)
			}
		})
	}
	if !isExecuteSQL("SYS.SP_EXECUTESQL") || isExecuteSQL("sp_execute") {
		t.Error("isExecuteSQL")
	}
	// Every truncation of a valid request is an error, never a panic.
	full := rpcPayload(procExecuteSQL, "", "SELECT 1", true)
	noParams := len(batchPayload("")) + 6 // ProcID and option flags: a call without parameters
	for n := 0; n < len(full)-30; n++ {   // the last 30 bytes are the ignored @params
		if n == noParams {
			continue
		}
		if _, err := parseRPC(full[:n], tds.TDS74); !errors.Is(err, errMalformedRequest) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

func TestBatchText(t *testing.T) {
	if s, err := batchText(batchPayload("SELECT 1"), tds.TDS74); err != nil || s != "SELECT 1" {
		t.Errorf("7.4: %q %v", s, err)
	}
	if s, err := batchText(appendUCS2(nil, "SELECT 1"), tds.TDS71); err != nil || s != "SELECT 1" {
		t.Errorf("7.1 (no ALL_HEADERS): %q %v", s, err)
	}
	for _, bad := range [][]byte{nil, {1, 0, 0}, {0xFF, 0, 0, 0, 1}, append(batchPayload(""), 'x')} {
		if _, err := batchText(bad, tds.TDS74); !errors.Is(err, errMalformedRequest) {
			t.Errorf("% x: %v", bad, err)
		}
	}
}

// FuzzParseRPC: no input makes the RPC decoder panic or read out of range.
func FuzzParseRPC(f *testing.F) {
	f.Add(rpcPayload(procExecuteSQL, "", "SELECT 1", false))
	f.Add(rpcPayload(procExecuteSQL, "", "SELECT 1", true))
	f.Add(rpcPayload(0, "sp_executesql", "SELECT 1", false))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseRPC(b, tds.TDS74)
		_, _ = parseRPC(b, tds.TDS71)
	})
}

// FuzzStatement: no batch text makes the statement parser panic, and
// recognised statements stay within the limits.
func FuzzStatement(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SELECT * FROM tdstest.rows(10, 100)", "WAITFOR DELAY '00:00:01.5'", "set x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st := parseStatement(s)
		if st.err == "" && (st.n > maxRows || st.m > maxRowBytes || st.delay >= maxDelay || st.n < 0 && st.kind != stmtSelectInt) {
			t.Fatalf("%q accepted out of limits: %+v", s, st)
		}
	})
}
