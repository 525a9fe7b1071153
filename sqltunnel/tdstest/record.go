package tdstest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Mode is the encryption a session ended up with.
type Mode int

// Negotiated modes.
const (
	// ModeUnset: the session ended before the encryption was settled.
	ModeUnset Mode = iota
	// ModeNone: no TLS at all; everything, the login included, in clear.
	ModeNone
	// ModeLoginOnly: TLS inside PRELOGIN, then only the first LOGIN7 packet
	// encrypted; the rest of the session in clear (client and server both
	// sent OFF).
	ModeLoginOnly
	// ModeFull: TDS 7.x with TLS inside PRELOGIN, then the whole session
	// inside TLS.
	ModeFull
	// ModeStrict: TDS 8, TLS first with ALPN tds/8.0.
	ModeStrict
)

func (m Mode) String() string {
	switch m {
	case ModeUnset:
		return "unset"
	case ModeNone:
		return "none"
	case ModeLoginOnly:
		return "login-only"
	case ModeFull:
		return "full"
	case ModeStrict:
		return "strict"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Outcome is how a session ended.
type Outcome int

// Session outcomes.
const (
	// OutcomeActive: the session has not ended yet.
	OutcomeActive Outcome = iota
	// OutcomeClosed: the client logged in and later closed the connection
	// (or the server was closed while it was logged in).
	OutcomeClosed
	// OutcomeLoginFailed: the server refused the login (unknown user, wrong
	// password, unknown database, integrated or federated authentication)
	// with an ERROR token and closed the connection.
	OutcomeLoginFailed
	// OutcomeRefused: the server closed the connection because of the
	// encryption setting: NOT_SUP from a client to EncryptForced, TDS 7.x to
	// EncryptStrict, TLS first to EncryptNotSupported.
	OutcomeRefused
	// OutcomeAborted: the client closed the connection before the login
	// completed, for example after an encryption answer it did not accept.
	OutcomeAborted
	// OutcomeTLSFailed: the TLS handshake failed, for example because the
	// client did not trust the certificate.
	OutcomeTLSFailed
	// OutcomeFault: a Faults knob ended the session.
	OutcomeFault
	// OutcomeProtocolError: the client sent something this server cannot
	// accept (malformed or unexpected packets); Err says what.
	OutcomeProtocolError
	// OutcomeServerClosed: Server.Close ended the session before login.
	OutcomeServerClosed
)

func (o Outcome) String() string {
	switch o {
	case OutcomeActive:
		return "active"
	case OutcomeClosed:
		return "closed"
	case OutcomeLoginFailed:
		return "login_failed"
	case OutcomeRefused:
		return "refused"
	case OutcomeAborted:
		return "aborted"
	case OutcomeTLSFailed:
		return "tls_failed"
	case OutcomeFault:
		return "fault"
	case OutcomeProtocolError:
		return "protocol_error"
	case OutcomeServerClosed:
		return "server_closed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Request is one request a logged-in client sent.
type Request struct {
	// Type is tds.PacketSQLBatch, tds.PacketRPC or tds.PacketTransMgr.
	Type tds.PacketType
	// Proc is the procedure an RPC called ("sp_executesql", or the name the
	// client sent); "" for a SQL batch.
	Proc string
	// Text is the batch text, or the statement of sp_executesql, cut to
	// maxRecordedText bytes.
	Text string
	// Canceled reports that an attention interrupted it.
	Canceled bool
}

// maxRecordedText and maxRecordedRequests bound a session record's memory:
// benchmarks run many requests on one connection.
const (
	maxRecordedText     = 4096
	maxRecordedRequests = 1000
)

// SessionRecord is what one connection did. Fields are filled in as the
// session progresses; Outcome is OutcomeActive until it ends. It holds no
// secret: the password is checked and forgotten.
type SessionRecord struct {
	// ID numbers sessions from 1 in the order they were accepted.
	ID int
	// Remote is the client's address.
	Remote string

	// ClientPrelogin reports that a PRELOGIN was received.
	ClientPrelogin bool
	// ClientEncryption is the ENCRYPTION value the client sent (OFF when
	// the option was absent); meaningful when ClientPrelogin is true.
	ClientEncryption tds.Encryption
	// ClientVersion is the client's PRELOGIN VERSION.
	ClientVersion tds.Version
	// Instance is the instance name the client sent in INSTOPT.
	Instance string
	// AnsweredEncryption is the ENCRYPTION value of the server's answer
	// (ON in TDS 8, where MS-TDS says the value is ignored).
	AnsweredEncryption tds.Encryption
	// Mode is the negotiated encryption.
	Mode Mode
	// TLSVersion is the negotiated TLS version (tls.VersionTLS12, ...), 0
	// without TLS.
	TLSVersion uint16
	// TLSResumed reports that the client resumed an earlier TLS session
	// (an abbreviated handshake).
	TLSResumed bool
	// ALPN is the negotiated application protocol ("tds/8.0" for strict
	// clients that offered it).
	ALPN string
	// LoginInTLS reports that the first LOGIN7 packet arrived inside TLS.
	LoginInTLS bool
	// LoginPackets is the number of packets the LOGIN7 message spanned.
	LoginPackets int

	// TDSVersion is the version in LOGIN7.
	TDSVersion tds.TDSVersion
	// User, Database, AppName, HostName, Library, ServerName and Language
	// are the LOGIN7 fields of the same names.
	// User is DOMAIN\user after an NTLM login.
	User, Database, AppName, HostName, Library, ServerName, Language string
	// AuthScheme is how the login authenticated: "SQL", or "NTLM" for
	// integrated authentication (Config.NTLMUsers).
	AuthScheme string
	// Features lists the LOGIN7 FeatureExt ids.
	Features []tds.FeatureID
	// RequestedPacketSize is the packet size in LOGIN7; PacketSize the one
	// granted (0 before login).
	RequestedPacketSize, PacketSize int
	// LoggedIn reports a successful login.
	LoggedIn bool

	// Requests lists the first requests after login, in order (at most
	// 1000; RequestCount counts them all).
	Requests     []Request
	RequestCount int
	// Attentions counts attention messages received.
	Attentions int

	// Outcome is how the session ended; Err is the error that ended it,
	// nil for a clean close.
	Outcome Outcome
	Err     error
}

// Batches returns the text of each recorded request: the SQL batch text or
// the sp_executesql statement.
func (r SessionRecord) Batches() []string {
	out := make([]string, 0, len(r.Requests))
	for _, q := range r.Requests {
		out = append(out, q.Text)
	}
	return out
}

func (r SessionRecord) clone() SessionRecord {
	r.Features = slices.Clone(r.Features)
	r.Requests = slices.Clone(r.Requests)
	return r
}

// recorder holds the records of all sessions and lets tests wait for them.
type recorder struct {
	mu      sync.Mutex
	recs    []*SessionRecord
	changed chan struct{} // closed and replaced whenever a record changes
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{})}
}

// notify wakes waiters; r.mu is held.
func (r *recorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// start creates the record of a new session.
func (r *recorder) start(remote string) *SessionRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := &SessionRecord{ID: len(r.recs) + 1, Remote: remote}
	r.recs = append(r.recs, rec)
	r.notify()
	return rec
}

// update runs f on rec under the lock and wakes waiters.
func (r *recorder) update(rec *SessionRecord, f func(*SessionRecord)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(rec)
	r.notify()
}

// end sets the final outcome of rec.
func (r *recorder) end(rec *SessionRecord, o Outcome, err error) {
	r.update(rec, func(rec *SessionRecord) { rec.Outcome, rec.Err = o, err })
}

// snapshot copies the records; r.mu is held.
func (r *recorder) snapshot() []SessionRecord {
	out := make([]SessionRecord, 0, len(r.recs))
	for _, rec := range r.recs {
		out = append(out, rec.clone())
	}
	return out
}

// Sessions returns a snapshot of every session so far, in the order they
// were accepted, live ones included (their Outcome is OutcomeActive).
func (s *Server) Sessions() []SessionRecord {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	return s.rec.snapshot()
}

// Wait blocks until cond, called with a snapshot of every session record
// (as Sessions returns), reports true, and returns that snapshot. cond is
// evaluated at once and again after every change to any record: a session
// accepted, a step of its handshake, a request, its end. It returns ctx's
// error if ctx ends first. cond must not call the Server.
func (s *Server) Wait(ctx context.Context, cond func([]SessionRecord) bool) ([]SessionRecord, error) {
	for {
		s.rec.mu.Lock()
		snap := s.rec.snapshot()
		ch := s.rec.changed
		s.rec.mu.Unlock()
		if cond(snap) {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("tdstest: waiting for sessions: %w", ctx.Err())
		}
	}
}

// WaitSessions waits until at least n sessions have ended and returns the
// records of the ended sessions in the order they were accepted.
func (s *Server) WaitSessions(ctx context.Context, n int) ([]SessionRecord, error) {
	snap, err := s.Wait(ctx, func(recs []SessionRecord) bool { return len(ended(recs)) >= n })
	if err != nil {
		return nil, err
	}
	return ended(snap), nil
}

// WaitSession waits for the session with the given ID (1 for the first
// connection accepted) to end and returns its record.
func (s *Server) WaitSession(ctx context.Context, id int) (SessionRecord, error) {
	snap, err := s.Wait(ctx, func(recs []SessionRecord) bool {
		return id >= 1 && id <= len(recs) && recs[id-1].Outcome != OutcomeActive
	})
	if err != nil {
		return SessionRecord{}, err
	}
	return snap[id-1], nil
}

func ended(recs []SessionRecord) []SessionRecord {
	var out []SessionRecord
	for _, r := range recs {
		if r.Outcome != OutcomeActive {
			out = append(out, r)
		}
	}
	return out
}
