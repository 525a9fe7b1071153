package tdstest

import (
	"encoding/binary"
	"fmt"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Transaction manager request types (MS-TDS 2.2.6.9).
const (
	tmBegin    = 5
	tmCommit   = 7
	tmRollback = 8
	tmSave     = 9
)

// ENVCHANGE types of transaction state (MS-TDS 2.2.7.9).
const (
	envBeginTran    = 8
	envCommitTran   = 9
	envRollbackTran = 10
)

// transaction answers a transaction manager request. Transactions mean
// nothing here (there is no data), but drivers open them: pytds by default
// on connect, go-mssqldb for BeginTx. BEGIN hands out a transaction
// descriptor, COMMIT and ROLLBACK retire it (and begin a new one when asked),
// as SQL Server's ENVCHANGE tokens 8, 9 and 10 say.
func (ss *session) transaction(payload []byte) error {
	b, err := skipAllHeaders(payload, ss.ver)
	if err != nil {
		return fail(OutcomeProtocolError, fmt.Errorf("decoding transaction manager request: %w", err))
	}
	r := reader{b: b}
	typ := r.u16()
	var out []byte
	switch typ {
	case tmBegin:
		r.u8()                  // isolation level
		r.take(int(r.u8()) * 2) // transaction name
		out = ss.beginTran(out)
	case tmCommit, tmRollback:
		r.take(int(r.u8()) * 2) // transaction name
		again := r.left() > 0 && r.u8() != 0
		if ss.tran == 0 {
			verb := "COMMIT"
			if typ == tmRollback {
				verb = "ROLLBACK"
			}
			return ss.batchError(tds.ErrorInfo{Number: 3902, State: 1, Class: 16,
				Message: fmt.Sprintf("The %s TRANSACTION request has no corresponding BEGIN TRANSACTION.", verb)})
		}
		env := byte(envCommitTran)
		if typ == tmRollback {
			env = envRollbackTran
		}
		out = appendTranEnv(out, env, nil, descriptor(ss.tran))
		ss.tran = 0
		if again {
			out = ss.beginTran(out)
		}
	case tmSave:
	default:
		return ss.batchError(tds.ErrorInfo{Number: 50000, State: 1, Class: 16,
			Message: fmt.Sprintf("tdstest: transaction manager request type %d is not supported", typ)})
	}
	if r.err != nil {
		return fail(OutcomeProtocolError, fmt.Errorf("decoding transaction manager request: %w", r.err))
	}
	return ss.w.message(appendDone(out, ss.ver, tds.Done{}))
}

func (ss *session) beginTran(out []byte) []byte {
	ss.tranSeq++
	ss.tran = ss.tranSeq
	return appendTranEnv(out, envBeginTran, descriptor(ss.tran), nil)
}

func descriptor(id uint64) []byte { return binary.LittleEndian.AppendUint64(nil, id) }

// appendTranEnv appends an ENVCHANGE whose values are B_VARBYTE transaction
// descriptors.
func appendTranEnv(b []byte, typ byte, newValue, oldValue []byte) []byte {
	n := 1 + 1 + len(newValue) + 1 + len(oldValue)
	b = append(b, byte(tds.TokenEnvChange))
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	b = append(b, typ, byte(len(newValue)))
	b = append(b, newValue...)
	b = append(b, byte(len(oldValue)))
	return append(b, oldValue...)
}
