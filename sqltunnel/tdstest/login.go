package tdstest

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// readLogin7 reads a LOGIN7 message, which may span packets (MS-TDS
// 2.2.6.4), and returns its payload and packet count. The first packet comes
// from first; when rest is non-nil the following packets come from the
// reader it returns (login-only encryption switches to clear text after the
// first packet).
func readLogin7(first *tds.Reader, rest func() *tds.Reader) ([]byte, int, error) {
	r := first
	var payload []byte
	for packets := 1; ; packets++ {
		h, p, err := r.ReadPacket()
		if err != nil {
			return nil, 0, err
		}
		if h.Type != tds.PacketLogin7 {
			return nil, 0, fmt.Errorf("expected LOGIN7, got a %s packet", h.Type)
		}
		if len(payload)+len(p) > tds.DefaultMaxMessageSize {
			return nil, 0, fmt.Errorf("LOGIN7 over %d bytes: %w", tds.DefaultMaxMessageSize, tds.ErrMessageTooLarge)
		}
		payload = append(payload, p...)
		if h.EOM() {
			return payload, packets, nil
		}
		if packets == 1 && rest != nil {
			r = rest()
		}
	}
}

// login checks the LOGIN7 payload and answers it on conn.
func (ss *session) login(conn net.Conn, payload []byte, packets int, inTLS bool) error {
	l, err := tds.ParseLogin7(payload)
	if err != nil {
		return fail(OutcomeProtocolError, fmt.Errorf("decoding LOGIN7: %w", err))
	}
	ss.ver = ackVersion(l.TDSVersion)
	ss.w = newReplyWriter(conn, tds.DefaultPacketSize, ss.spid)
	ss.update(func(r *SessionRecord) {
		r.LoginInTLS = inTLS
		r.LoginPackets = packets
		r.TDSVersion = l.TDSVersion
		r.User, r.Database, r.AppName, r.HostName = l.UserName, l.Database, l.AppName, l.HostName
		r.AuthScheme = "SQL"
		r.Library, r.ServerName, r.Language = l.Library, l.ServerName, l.Language
		r.Features = l.Features
		r.RequestedPacketSize = int(l.PacketSize)
	})
	ss.log.Debug("login7", zap.Stringer("login", l), zap.Bool("in_tls", inTLS))

	var db string
	var refusal []tds.ErrorInfo
	if l.Auth() == tds.AuthIntegrated && len(ss.cfg.NTLMUsers) > 0 {
		if db, refusal, err = ss.ntlmLogin(conn, payload); err != nil {
			return err
		}
	} else {
		db, refusal = ss.authenticate(l, payload)
	}
	if refusal != nil {
		var rb tds.ReplyBuilder
		rb.Version = ss.ver
		for _, e := range refusal {
			rb.Error(e)
		}
		rb.Done(tds.Done{Status: tds.DoneError})
		out, err := rb.Bytes()
		if err != nil {
			return err
		}
		if err := ss.w.message(out); err != nil {
			return err
		}
		last := refusal[len(refusal)-1]
		return fail(OutcomeLoginFailed, fmt.Errorf("login refused: %s", last))
	}

	size := grantPacketSize(int(l.PacketSize), ss.cfg.maxPacketSize())
	out, err := ss.loginReply(l, db, size)
	if err != nil {
		return err
	}
	if err := ss.w.message(out); err != nil {
		return err
	}
	ss.w.setPacketSize(size)
	ss.update(func(r *SessionRecord) {
		r.PacketSize = size
		r.LoggedIn = true
	})
	if err := ss.raw.SetDeadline(time.Time{}); err != nil {
		return err
	}
	return ss.serveRequests(conn)
}

// authenticate checks a SQL login against Config.Users and the database
// against Config.Database. It returns the database to use, or the ERROR
// tokens SQL Server sends for the refusal.
func (ss *session) authenticate(l *tds.Login7, payload []byte) (string, []tds.ErrorInfo) {
	loginFailed := ss.loginFailed
	switch l.Auth() {
	case tds.AuthIntegrated:
		return "", loginFailed(msgUntrustedDomain, 18452)
	case tds.AuthFedAuth, tds.AuthNone:
		return "", loginFailed("Login failed for user ''.", 18456)
	}
	failed := loginFailed(fmt.Sprintf("Login failed for user '%s'.", l.UserName), 18456)
	want, ok := ss.cfg.Users[l.UserName]
	pw, err := tds.DecodePasswordForServerSide(payload)
	if err != nil || !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(want)) != 1 {
		return "", failed
	}
	db := ss.cfg.database()
	switch {
	case l.Database == "" || strings.EqualFold(l.Database, db):
	case strings.EqualFold(l.Database, DefaultDatabase):
		db = DefaultDatabase
	default:
		cannotOpen := tds.ErrorInfo{
			Number: 4060, State: 1, Class: 11, ServerName: ss.cfg.serverName(), LineNumber: 1,
			Message: fmt.Sprintf("Cannot open database \"%s\" requested by the login. The login failed.", l.Database),
		}
		return "", append([]tds.ErrorInfo{cannotOpen}, failed...)
	}
	return db, nil
}

// msgUntrustedDomain is SQL Server's text of error 18452.
const msgUntrustedDomain = "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."

// loginFailed is the ERROR token of a refused login, as SQL Server sends it.
func (ss *session) loginFailed(msg string, number int32) []tds.ErrorInfo {
	return []tds.ErrorInfo{{Number: number, State: 1, Class: 14, Message: msg, ServerName: ss.cfg.serverName(), LineNumber: 1}}
}

// loginReply builds the reply to a successful login in the order SQL Server
// sends it (MS-TDS 4.4): database, its INFO, collation, language and its
// INFO, LOGINACK, FEATUREEXTACK when the client sent FeatureExt, packet
// size, routing (fault), DONE.
func (ss *session) loginReply(l *tds.Login7, db string, size int) ([]byte, error) {
	info := func(number int32, state uint8, msg string) tds.ErrorInfo {
		return tds.ErrorInfo{Number: number, State: state, Class: 0, Message: msg, ServerName: ss.cfg.serverName()}
	}
	var rb tds.ReplyBuilder
	rb.Version = ss.ver
	rb.EnvDatabase(db, DefaultDatabase)
	rb.Info(info(5701, 2, fmt.Sprintf("Changed database context to '%s'.", db)))
	rb.EnvCollation(collationDefault, nil)
	rb.EnvLanguage("us_english", "")
	rb.Info(info(5703, 1, "Changed language setting to us_english."))
	rb.LoginAck(tds.LoginAck{
		Interface:   1, // SQL_TSQL
		TDSVersion:  ss.ver,
		ProgName:    "Microsoft SQL Server",
		ProgVersion: serverVersion,
	})
	if l.HasFeatureExt() {
		// Acknowledge no feature: the client then uses none of them.
		rb.FeatureExtAck(nil)
	}
	rb.EnvPacketSize(size, tds.DefaultPacketSize)
	if r := ss.cfg.Faults.Routing; r != nil {
		rb.EnvRouting(*r)
	}
	rb.Done(tds.Done{Status: tds.DoneFinal})
	return rb.Bytes()
}

// ackVersion is the TDS version of LOGINACK: the client's for TDS 7.0 to
// 7.3, else 7.4 (TDS 8 clients send 8.0 in LOGIN7 and SQL Server answers
// 7.4).
func ackVersion(v tds.TDSVersion) tds.TDSVersion {
	switch v {
	case tds.TDS70, tds.TDS71, tds.TDS71A, tds.TDS72, tds.TDS73A, tds.TDS73B:
		return v
	}
	return tds.TDS74
}

// grantPacketSize returns the packet size granted for a LOGIN7 request: 0
// means the server default 4096, others are clamped to 512..limit.
func grantPacketSize(requested, limit int) int {
	if requested == 0 {
		requested = tds.DefaultPacketSize
	}
	return min(max(requested, tds.MinPacketSize), limit)
}

// isDecodeError reports framing errors from package tds.
func isDecodeError(err error) bool {
	for _, e := range []error{tds.ErrBadLength, tds.ErrPacketTooLarge, tds.ErrMessageTooLarge, tds.ErrMixedTypes, tds.ErrShortHeader} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
