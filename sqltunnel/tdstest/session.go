package tdstest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// handshakeTimeout bounds everything before a successful login: PRELOGIN,
// TLS and LOGIN7. A client that stalls longer is dropped.
const handshakeTimeout = 30 * time.Second

// alpnTDS8 is the ALPN protocol id of TDS 8 (MS-TDS 1.9).
const alpnTDS8 = "tds/8.0"

// firstSPID is the SPID of the first session; SQL Server numbers user
// sessions from 51.
const firstSPID = 51

// session serves one connection.
type session struct {
	srv *Server
	cfg *Config
	raw net.Conn // the accepted connection
	rc  *recordConn
	rec *SessionRecord
	log *zap.Logger

	spid uint16
	ver  tds.TDSVersion // version used to encode tokens (the LOGINACK one)
	w    *replyWriter

	// Attention bookkeeping. The reader goroutine counts attentions as they
	// arrive (attnSeen) and wakes waiters (attnCh); the session goroutine
	// counts the attention messages it dequeues (attnDequeued) and the
	// acknowledgements it sent (attnAnswered). An attention is pending while
	// attnSeen > attnAnswered; one acknowledged while streaming is skipped
	// when its message is dequeued later.
	attnSeen     atomic.Int64
	attnCh       chan struct{}
	attnAnswered int64
	attnDequeued int64
	gone         chan struct{} // closed when the reader goroutine stops

	oversizedDone bool   // Faults.OversizedPacket applied
	tran, tranSeq uint64 // current transaction descriptor (0: none), last one issued
}

func newSession(s *Server, c net.Conn) *session {
	rec := s.rec.start(c.RemoteAddr().String())
	return &session{
		srv:    s,
		cfg:    &s.cfg,
		raw:    c,
		rec:    rec,
		log:    s.log.With(zap.String("remote", rec.Remote), zap.Int("conn_id", rec.ID)),
		spid:   uint16(firstSPID + rec.ID - 1),
		attnCh: make(chan struct{}, 1),
		gone:   make(chan struct{}),
	}
}

// sessionError is an error that decides the session's outcome.
type sessionError struct {
	outcome Outcome
	err     error
}

func (e *sessionError) Error() string {
	if e.err == nil {
		return e.outcome.String()
	}
	return e.outcome.String() + ": " + e.err.Error()
}
func (e *sessionError) Unwrap() error { return e.err }

func fail(o Outcome, err error) error { return &sessionError{outcome: o, err: err} }

// errPanic marks a session ended by a bug in this package: the panic is
// recovered so that one connection cannot take down a test binary or `gateway
// demo`, logged at Error level and kept in the record for tests to find.
var errPanic = errors.New("tdstest: internal error")

func (ss *session) serve() {
	err := ss.runRecovered()
	o, cause := ss.classify(err)
	ss.srv.rec.end(ss.rec, o, cause)
	ss.srv.rec.mu.Lock()
	r := ss.rec.clone()
	ss.srv.rec.mu.Unlock()
	ss.log.Info("session ended",
		zap.Stringer("outcome", o),
		zap.Stringer("client_encryption", r.ClientEncryption),
		zap.Stringer("mode", r.Mode),
		zap.Bool("login_in_tls", r.LoginInTLS),
		zap.String("user", r.User),
		zap.String("app", r.AppName),
		zap.Int("requests", r.RequestCount),
		zap.Error(cause))
}

func (ss *session) runRecovered() (err error) {
	defer func() {
		if p := recover(); p != nil {
			ss.log.Error("panic serving connection", zap.Any("panic", p), zap.StackSkip("stack", 2))
			err = fail(OutcomeProtocolError, fmt.Errorf("%w: panic: %v", errPanic, p))
		}
	}()
	return ss.run()
}

// classify maps the error that ended run to an outcome and the error kept
// in the record (nil for a clean end).
func (ss *session) classify(err error) (Outcome, error) {
	var se *sessionError
	if errors.As(err, &se) {
		return se.outcome, se.err
	}
	loggedIn := ss.loggedIn()
	switch {
	case err == nil || errors.Is(err, io.EOF):
		err = nil
	case ss.srv.ctx.Err() != nil:
		if !loggedIn {
			return OutcomeServerClosed, nil
		}
		err = nil
	}
	if loggedIn {
		return OutcomeClosed, err
	}
	return OutcomeAborted, err
}

func (ss *session) loggedIn() bool {
	ss.srv.rec.mu.Lock()
	defer ss.srv.rec.mu.Unlock()
	return ss.rec.LoggedIn
}

func (ss *session) update(f func(*SessionRecord)) { ss.srv.rec.update(ss.rec, f) }

// run serves the connection until it ends.
func (ss *session) run() error {
	if err := ss.raw.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	var first [1]byte
	if _, err := io.ReadFull(ss.raw, first[:]); err != nil {
		return err
	}
	pc := &peekedConn{Conn: ss.raw, first: first[0], peeked: true}
	switch first[0] {
	case tlsRecordHandshake:
		return ss.runStrict(pc)
	case byte(tds.PacketPrelogin):
		return ss.runTDS7(pc)
	}
	return fail(OutcomeProtocolError, fmt.Errorf("first byte 0x%02X is neither PRELOGIN (0x12) nor a TLS handshake record (0x16)", first[0]))
}

// tlsRecordHandshake is the content type of a TLS handshake record, the
// first byte a TDS 8 client sends.
const tlsRecordHandshake = 0x16

// runTDS7 serves a TDS 7.x connection: PRELOGIN in clear, then TLS inside
// PRELOGIN packets when encryption is negotiated.
func (ss *session) runTDS7(pc *peekedConn) error {
	if ss.cfg.Encryption == EncryptStrict {
		return fail(OutcomeRefused, errors.New("TDS 7.x PRELOGIN refused: the server accepts only TDS 8 (strict)"))
	}
	ss.rc = &recordConn{Conn: pc}
	pre, err := ss.readPrelogin(tds.NewReader(ss.rc))
	if err != nil {
		return err
	}
	client := clientEncryption(pre)
	if err := ss.preloginFaults(); err != nil {
		return err
	}
	answer, refuse := answerEncryption(ss.cfg.Encryption, client)
	if f := ss.cfg.Faults.AnswerEncryption; f != nil {
		answer, refuse = *f, false
	}
	if err := ss.writePrelogin(ss.rc, pre, answer); err != nil {
		return err
	}
	if refuse {
		return fail(OutcomeRefused, fmt.Errorf("client sent ENCRYPTION %s, which server setting %s refuses: connection closed after the answer (MS-TDS 2.2.6.5)", client, ss.cfg.Encryption))
	}
	mode := modeFor(client, answer)
	ss.update(func(r *SessionRecord) { r.Mode = mode })

	if mode == ModeNone {
		payload, packets, err := readLogin7(tds.NewReader(ss.rc), nil)
		if err != nil {
			return ss.loginReadError(err)
		}
		return ss.login(ss.rc, payload, packets, false)
	}

	tc, err := tdstls.Server(ss.srv.ctx, ss.rc, ss.srv.tlsCfg)
	if err != nil {
		var up *tdstls.UnexpectedPacketError
		if errors.As(err, &up) {
			return fail(OutcomeProtocolError, fmt.Errorf("answered ENCRYPTION %s but the client did not start TLS: %w", answer, err))
		}
		return ss.tlsError(err)
	}
	ss.recordTLS(tc.ConnectionState())

	if mode == ModeFull {
		payload, packets, err := readLogin7(tds.NewReader(tc), nil)
		if err != nil {
			return ss.loginReadError(err)
		}
		return ss.login(tc, payload, packets, true)
	}

	// Login-only (MS-TDS 2.2.6.5, both sides OFF): the first LOGIN7 packet
	// is the only thing sent inside TLS; then both sides drop TLS without a
	// close_notify and carry on in clear. Read that packet record by record
	// so that no clear-text byte after it is swallowed by the TLS layer.
	ss.rc.exact = true
	payload, packets, err := readLogin7(tds.NewReader(tc), func() *tds.Reader {
		ss.rc.exact = false
		return tds.NewReader(ss.rc)
	})
	ss.rc.exact = false
	if err != nil {
		return ss.loginReadError(err)
	}
	return ss.login(ss.rc, payload, packets, true)
}

// runStrict serves a TDS 8 connection: TLS first, then PRELOGIN and LOGIN7
// inside it.
func (ss *session) runStrict(pc *peekedConn) error {
	if ss.cfg.Encryption == EncryptNotSupported {
		return fail(OutcomeRefused, errors.New("TLS-first (TDS 8) connection refused: the server does not support encryption"))
	}
	cfg := ss.srv.tlsCfg.Clone()
	cfg.NextProtos = []string{alpnTDS8}
	tc := tls.Server(pc, cfg)
	ctx, cancel := context.WithTimeout(ss.srv.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return ss.tlsError(err)
	}
	ss.recordTLS(tc.ConnectionState())
	ss.update(func(r *SessionRecord) { r.Mode = ModeStrict })

	r := tds.NewReader(tc)
	pre, err := ss.readPrelogin(r)
	if err != nil {
		return err
	}
	if err := ss.preloginFaults(); err != nil {
		return err
	}
	// MS-TDS 2.2.6.5: in TDS 8 the client's value is ignored. The answer
	// is ON, which no client can mistake for a refusal.
	answer := tds.EncryptOn
	if f := ss.cfg.Faults.AnswerEncryption; f != nil {
		answer = *f
	}
	if err := ss.writePrelogin(tc, pre, answer); err != nil {
		return err
	}
	payload, packets, err := readLogin7(r, nil)
	if err != nil {
		return ss.loginReadError(err)
	}
	return ss.login(tc, payload, packets, true)
}

func (ss *session) recordTLS(st tls.ConnectionState) {
	ss.update(func(r *SessionRecord) {
		r.TLSVersion = st.Version
		r.TLSResumed = st.DidResume
		r.ALPN = st.NegotiatedProtocol
	})
}

func (ss *session) tlsError(err error) error {
	if ss.srv.ctx.Err() != nil {
		return fail(OutcomeServerClosed, nil)
	}
	return fail(OutcomeTLSFailed, fmt.Errorf("TLS handshake: %w", err))
}

// loginReadError classifies a failure to read LOGIN7.
func (ss *session) loginReadError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || ss.srv.ctx.Err() != nil {
		return err // the client (or Close) hung up: aborted or server closed
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return err
	}
	return fail(OutcomeProtocolError, fmt.Errorf("reading LOGIN7: %w", err))
}

// preloginFaults applies the faults that act right after PRELOGIN.
func (ss *session) preloginFaults() error {
	f := ss.cfg.Faults
	switch {
	case f.CloseAfterPrelogin:
		return fail(OutcomeFault, errors.New("fault: closed after PRELOGIN"))
	case f.StallAfterPrelogin:
		_ = ss.raw.SetDeadline(time.Time{})
		// Block until the client or Close ends the connection.
		_, _ = io.Copy(io.Discard, ss.raw)
		return fail(OutcomeFault, errors.New("fault: stalled after PRELOGIN"))
	}
	return nil
}
