package sqltunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
	"github.com/gateway-project/gateway/tlsmgr"
)

// maxPreloginSize caps a PRELOGIN message. Real ones are under 100 bytes;
// MS-TDS puts no limit on them, so this leaves room for unknown options.
const maxPreloginSize = 8 << 10

// gatewayVersion is the VERSION the gateway sends in its own PRELOGIN and
// answers with when the upstream's is unknown.
var gatewayVersion = tds.Version{Major: 1}

// plan is what the client leg does after the PRELOGIN answer.
type plan uint8

const (
	planTLS          plan = iota // TLS inside PRELOGIN, then login (closed if the client does not start TLS)
	planPlain                    // no TLS: a NOT_SUP loopback client under allow_plaintext_loopback
	planRefuseStrict             // TLS, then an ERROR reply to LOGIN7: the listener is strict
)

// decide applies the TDS encryption policy of DESIGN.md to a TDS 7.x
// client's PRELOGIN: what to answer and what happens next. Login-only
// encryption (both sides OFF) is never answered: OFF gets REQ, which makes
// the client encrypt the whole session. The client-certificate bit (0x80)
// is never echoed: the gateway does not authenticate clients by certificate.
func (s *session) decide(pl *tds.Prelogin) (tds.Encryption, plan) {
	if s.l.cfg.ClientEncryption == configs.ClientEncryptionStrict {
		return tds.EncryptReq, planRefuseStrict
	}
	mode := tds.EncryptOff // an absent ENCRYPTION option means OFF (MS-TDS 2.2.6.5)
	if pl.Encryption != nil {
		mode = pl.Encryption.Mode()
	}
	switch mode {
	case tds.EncryptOn, tds.EncryptReq:
		return tds.EncryptOn, planTLS
	case tds.EncryptNotSup:
		if s.l.cfg.ClientEncryption == configs.ClientEncryptionAllowPlaintextLoopback && isLoopback(s.remote) {
			return tds.EncryptNotSup, planPlain
		}
	}
	// OFF, NOT_SUP and values MS-TDS does not define: encryption required.
	// go-mssqldb and FreeTDS start TLS anyway after NOT_SUP; others close.
	return tds.EncryptReq, planTLS
}

// serveTDS7 runs a TDS 7.x client: PRELOGIN in clear, the upstream's
// PRELOGIN, our answer, then the client's and upstream's TLS handshakes
// concurrently, then the login.
func (s *session) serveTDS7(ctx, hctx context.Context, pc *peekConn) {
	s.audit.dialect = "tds7"
	pl, ok := s.readClientPrelogin(pc)
	if !ok {
		return
	}
	answer, p := s.decide(pl)
	s.audit.clientEncryption = encryptionName(pl.Encryption)
	s.audit.answered = answer.String()

	var up *upstream
	if p != planRefuseStrict {
		// The upstream's PRELOGIN answer comes first, so that ours can carry
		// what depends on the server (MARS, FEDAUTHREQUIRED, NONCE).
		up = s.newUpstream()
		up.dial(ctx)
		up.prelogin(ctx, pl)
	}
	if !s.answerPrelogin(pc, answer, pl, up) {
		return
	}
	secured := s.goUpstream(ctx, up, (*upstream).secure)

	client := leg{conn: pc, raw: s.raw}
	if p == planPlain {
		s.audit.plain = true
	} else {
		tc, err := tdstls.Server(hctx, pc, s.l.tds7TLS)
		if err != nil {
			secured.abort()
			var unexpected *tdstls.UnexpectedPacketError
			if errors.As(err, &unexpected) {
				// Typically LOGIN7 in clear text after NOT_SUP: nothing of it
				// was read beyond its header, and nothing goes upstream.
				s.log.Warn("client refused encryption; closing",
					zap.String("client_encryption", s.audit.clientEncryption),
					zap.String("answered", s.audit.answered),
					zap.Stringer("packet_type", unexpected.Type))
				s.ended("refused_encryption")
				return
			}
			s.handshakeFailed(err)
			return
		}
		client.conn = tc
		cs := tc.ConnectionState()
		s.audit.clientTLS = &cs
		s.l.opts.metrics.handshake(s.l.cfg.Name, tlsmgr.HandshakeVersion(cs.Version), tlsmgr.HandshakeOK)
	}
	var refuse *refusal
	if p == planRefuseStrict {
		refuse = strictRequired(s.l.cfg.Name)
	}
	s.login(client, secured, refuse)
}

// serveTDS8 runs a TDS 8 (strict) client: TLS first with ALPN tds/8.0, then
// PRELOGIN inside TLS. The upstream is dialed while the client's handshake
// runs. Every listener policy accepts TDS 8.
func (s *session) serveTDS8(ctx, hctx context.Context, pc *peekConn) {
	s.audit.dialect = "tds8"
	up := s.newUpstream()
	dialed := s.goUpstream(ctx, up, (*upstream).dial)

	tc := tls.Server(pc, s.l.tds8TLS)
	if err := tc.HandshakeContext(hctx); err != nil {
		dialed.abort()
		s.handshakeFailed(err)
		return
	}
	cs := tc.ConnectionState()
	s.audit.clientTLS = &cs
	s.l.opts.metrics.handshake(s.l.cfg.Name, tlsmgr.HandshakeVersion(cs.Version), tlsmgr.HandshakeOK)

	pl, ok := s.readClientPrelogin(tc)
	if !ok {
		dialed.abort()
		return
	}
	// MS-TDS 2.2.6.5: in TDS 8 the ENCRYPTION option is ignored; it is
	// logged as sent and answered ON (the session is encrypted).
	s.audit.clientEncryption = encryptionName(pl.Encryption)
	s.audit.answered = tds.EncryptOn.String()

	dialed.wait()
	up.prelogin(ctx, pl)
	if !s.answerPrelogin(tc, tds.EncryptOn, pl, up) {
		return
	}
	secured := s.goUpstream(ctx, up, (*upstream).secure)
	s.login(leg{conn: tc, raw: s.raw}, secured, nil)
}

// readClientPrelogin reads and decodes the client's PRELOGIN message.
func (s *session) readClientPrelogin(r io.Reader) (*tds.Prelogin, bool) {
	tr := tds.NewReader(r)
	tr.SetMaxMessageSize(maxPreloginSize)
	msg, err := tr.ReadMessage(nil)
	if err != nil {
		s.readFailed("reading PRELOGIN", err)
		return nil, false
	}
	if msg.Type != tds.PacketPrelogin {
		s.malformed(fmt.Sprintf("%s message before PRELOGIN", msg.Type), nil)
		return nil, false
	}
	pl, err := tds.ParsePrelogin(msg.Payload)
	if err != nil {
		s.malformed("decoding PRELOGIN", err)
		return nil, false
	}
	return pl, true
}

// answerPrelogin writes the gateway's PRELOGIN answer to the client.
func (s *session) answerPrelogin(w io.Writer, enc tds.Encryption, client *tds.Prelogin, up *upstream) bool {
	a := buildAnswer(enc, client, up)
	s.audit.mars = a.MARS != nil && *a.MARS
	payload, err := a.MarshalBinary()
	if err == nil {
		err = tds.NewWriter(w).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: payload})
	}
	if err != nil {
		s.readFailed("answering PRELOGIN", err)
		return false
	}
	return true
}

// buildAnswer is the PRELOGIN the client gets: the encryption the policy
// chose, and otherwise what the upstream answered (its VERSION, MARS,
// FEDAUTHREQUIRED and NONCEOPT). When the upstream could not be reached the
// client still gets a well-formed answer, so that it sends LOGIN7 and can be
// told why in an ERROR token.
func buildAnswer(enc tds.Encryption, client *tds.Prelogin, up *upstream) *tds.Prelogin {
	a := &tds.Prelogin{Version: gatewayVersion, Encryption: new(enc), InstOpt: []byte{0}}
	var r *tds.Prelogin
	if up != nil && up.err == nil {
		r = up.reply
	}
	if r != nil {
		a.Version = r.Version
	}
	if client.MARS != nil {
		a.MARS = new(*client.MARS && r != nil && r.MARS != nil && *r.MARS)
	}
	switch {
	case r != nil && r.FedAuthRequired != nil:
		a.FedAuthRequired = new(*r.FedAuthRequired)
	case client.FedAuthRequired != nil:
		// go-mssqldb fails a FedAuth login before sending it if the answer
		// lacks the option; "not required" lets it reach the ERROR reply.
		a.FedAuthRequired = new(false)
	}
	if r != nil && r.Nonce != nil {
		a.Nonce = new(*r.Nonce)
	}
	return a
}

func (s *session) handshakeFailed(err error) {
	s.ended("handshake_failed")
	s.l.opts.metrics.handshake(s.l.cfg.Name, tlsmgr.HandshakeVersion(0), tlsmgr.HandshakeFailure(err))
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("client TLS handshake timed out; closing", zap.String("dialect", s.audit.dialect), zap.Error(err))
		return
	}
	s.log.Warn("client TLS handshake failed; closing", zap.String("dialect", s.audit.dialect), zap.Error(err))
}

// encryptionName is the ENCRYPTION value as sent, for logs.
func encryptionName(e *tds.Encryption) string {
	if e == nil {
		return "absent"
	}
	return e.String()
}
