package tdstest

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// maxRequestSize caps one request message (SQL batch or RPC).
const maxRequestSize = 8 << 20

// inbound is a message read by the reader goroutine, or the error that
// stopped it.
type inbound struct {
	m   tds.Message
	err error
}

// serveRequests answers requests on conn until the client leaves. A reader
// goroutine reads messages while the session goroutine writes results, so
// an attention arriving during a long result is seen at once (MS-TDS
// 3.3.5.7: the server keeps listening while a request executes).
func (ss *session) serveRequests(conn net.Conn) error {
	r := tds.NewReader(conn)
	// Clients send packets up to the negotiated size; accept up to the
	// protocol maximum rather than police them.
	_ = r.SetMaxPacketSize(tds.MaxPacketSize)
	r.SetMaxMessageSize(maxRequestSize)

	msgs := make(chan inbound, 4)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ss.readRequests(r, msgs, done)
	}()
	defer func() {
		close(done)
		_ = ss.raw.Close() // unblocks the reader
		wg.Wait()
	}()

	for {
		var in inbound
		select {
		case in = <-msgs:
		case <-ss.srv.ctx.Done():
			return nil
		}
		if in.err != nil {
			if isDecodeError(in.err) {
				return fail(OutcomeProtocolError, fmt.Errorf("reading request: %w", in.err))
			}
			return in.err
		}
		if err := ss.handle(in.m); err != nil {
			return err
		}
	}
}

// readRequests reads messages until an error, counting attentions as they
// arrive.
func (ss *session) readRequests(r *tds.Reader, msgs chan<- inbound, done <-chan struct{}) {
	defer close(ss.gone)
	for {
		m, err := r.ReadMessage(nil)
		if err == nil && m.Type == tds.PacketAttention {
			ss.attnSeen.Add(1)
			select {
			case ss.attnCh <- struct{}{}:
			default:
			}
		}
		select {
		case msgs <- inbound{m: m, err: err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// attentionPending reports an attention not yet acknowledged.
func (ss *session) attentionPending() bool { return ss.attnSeen.Load() > ss.attnAnswered }

// ackAttention sends the attention acknowledgement, a DONE with DONE_ATTN,
// as a message of its own.
func (ss *session) ackAttention() error {
	ss.attnAnswered++
	return ss.w.message(appendDone(nil, ss.ver, tds.Done{Status: tds.DoneAttn}))
}

// interrupt ends the reply of a request stopped by an attention with a DONE
// without DONE_MORE, then acknowledges the attention in the next message.
// MS-TDS 3.3.5.7 (example in 4.19.2) allows that DONE before the
// acknowledgement; clients need the two messages: tedious reads the
// acknowledgement from the message after the one answering the canceled
// request, and go-mssqldb reads one more response when the current one ends
// without it.
func (ss *session) interrupt() error {
	if _, err := ss.w.Write(appendDone(nil, ss.ver, tds.Done{})); err != nil {
		return err
	}
	if err := ss.w.end(); err != nil {
		return err
	}
	return ss.ackAttention()
}

// handle answers one message.
func (ss *session) handle(m tds.Message) error {
	switch m.Type {
	case tds.PacketAttention:
		ss.attnDequeued++
		ss.update(func(r *SessionRecord) { r.Attentions++ })
		ss.log.Debug("attention", zap.Bool("already_answered", ss.attnDequeued <= ss.attnAnswered))
		if ss.attnDequeued > ss.attnAnswered {
			// Nothing was running (MS-TDS 3.3.5.7): acknowledge anyway.
			return ss.ackAttention()
		}
		return nil
	case tds.PacketSQLBatch, tds.PacketRPC, tds.PacketTransMgr:
	default:
		return fail(OutcomeProtocolError, fmt.Errorf("unexpected %s message after login", m.Type))
	}
	if m.Status&tds.StatusIgnore != 0 {
		// MS-TDS 2.2.1.7: the client abandoned the request; answer with a
		// lone DONE_ERROR.
		return ss.w.message(appendDone(nil, ss.ver, tds.Done{Status: tds.DoneError}))
	}
	switch m.Type {
	case tds.PacketSQLBatch:
		text, err := batchText(m.Payload, ss.ver)
		if err != nil {
			return fail(OutcomeProtocolError, fmt.Errorf("decoding SQL batch: %w", err))
		}
		idx := ss.recordRequest(Request{Type: m.Type, Text: text})
		ss.log.Debug("sql batch", zap.String("text", truncate(text, 200)))
		return ss.execute(text, false, idx)
	case tds.PacketRPC:
		call, err := parseRPC(m.Payload, ss.ver)
		if err != nil {
			return fail(OutcomeProtocolError, fmt.Errorf("decoding RPC: %w", err))
		}
		idx := ss.recordRequest(Request{Type: m.Type, Proc: call.proc, Text: call.stmt})
		ss.log.Debug("rpc", zap.String("proc", call.proc), zap.String("text", truncate(call.stmt, 200)))
		switch {
		case !isExecuteSQL(call.proc):
			return ss.rpcError(tds.ErrorInfo{Number: 2812, State: 62, Class: 16,
				Message: fmt.Sprintf("Could not find stored procedure '%s'.", call.proc)})
		case !call.stmtOK:
			return ss.rpcError(tds.ErrorInfo{Number: 214, State: 2, Class: 16,
				Message: "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'."})
		}
		return ss.execute(call.stmt, true, idx)
	default: // PacketTransMgr
		ss.recordRequest(Request{Type: m.Type})
		return ss.transaction(m.Payload)
	}
}

// recordRequest appends q to the session record and returns its index, or -1
// past the recording cap.
func (ss *session) recordRequest(q Request) int {
	q.Text = truncate(q.Text, maxRecordedText)
	idx := -1
	ss.update(func(r *SessionRecord) {
		r.RequestCount++
		if len(r.Requests) < maxRecordedRequests {
			idx = len(r.Requests)
			r.Requests = append(r.Requests, q)
		}
	})
	return idx
}

func (ss *session) markCanceled(idx int) {
	if idx < 0 {
		return
	}
	ss.update(func(r *SessionRecord) { r.Requests[idx].Canceled = true })
}

// errorToken appends an ERROR token from this server.
func (ss *session) errorToken(b []byte, e tds.ErrorInfo) ([]byte, error) {
	e.ServerName = ss.cfg.serverName()
	if e.LineNumber == 0 {
		e.LineNumber = 1
	}
	var rb tds.ReplyBuilder
	rb.Version = ss.ver
	rb.Error(e)
	tok, err := rb.Bytes()
	if err != nil {
		return b, err
	}
	return append(b, tok...), nil
}

// batchError answers a SQL batch with ERROR and DONE_ERROR.
func (ss *session) batchError(e tds.ErrorInfo) error {
	b, err := ss.errorToken(nil, e)
	if err != nil {
		return err
	}
	return ss.w.message(appendDone(b, ss.ver, tds.Done{Status: tds.DoneError}))
}

// rpcError answers an RPC with ERROR and DONEPROC with DONE_ERROR.
func (ss *session) rpcError(e tds.ErrorInfo) error {
	b, err := ss.errorToken(nil, e)
	if err != nil {
		return err
	}
	return ss.w.message(appendDone(b, ss.ver, tds.Done{Token: tds.TokenDoneProc, Status: tds.DoneError}))
}

// errServerClosing ends a request when Server.Close is called.
var errServerClosing = errors.New("server closing")
