package sqltunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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

// decide applies the TDS encryption policy (docs/architecture.md, "TDS
// encryption policy") to a TDS 7.x client's PRELOGIN: what to answer and what happens next. Login-only
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

// negotiation is what the PRELOGIN exchange settled: the client's
// PRELOGIN, what the gateway answered and what the client leg does next,
// and the upstream, whose TLS handshake is under way (or which failed, or,
// for planRefuseStrict, was never dialled).
type negotiation struct {
	prelogin *tds.Prelogin
	answer   tds.Encryption
	plan     plan
	upstream *pending
}

// negotiate is the PRELOGIN exchange on conn: the client's PRELOGIN, the
// upstream's (dialled here, or already being dialled by dialing for TDS 8),
// then the gateway's answer to the client. It starts the upstream's TLS
// handshake before it returns. A TDS 7.x client's encryption follows the
// listener's policy (decide); in TDS 8 the session is already encrypted and
// the ENCRYPTION option is ignored (MS-TDS 2.2.6.5): it is logged as sent
// and answered ON. Errors are *ended.
func (s *session) negotiate(ctx context.Context, conn net.Conn, dialing *pending) (*negotiation, error) {
	pl, err := s.readClientPrelogin(conn)
	if err != nil {
		dialing.abort()
		return nil, err
	}
	n := &negotiation{prelogin: pl, answer: tds.EncryptOn, plan: planTLS}
	if dialing == nil {
		n.answer, n.plan = s.decide(pl)
	}
	s.audit.clientEncryption = encryptionName(pl.Encryption)
	s.audit.answered = n.answer.String()

	var up *upstream
	switch {
	case dialing != nil:
		up = dialing.wait()
	case n.plan != planRefuseStrict:
		up = s.newUpstream()
		up.dial(ctx)
	}
	up.prelogin(ctx, pl)
	if up != nil && up.err == nil {
		s.audit.steps.upstreamPrelogin = time.Since(s.start)
	}
	if err := s.answerPrelogin(conn, n.answer, pl, up); err != nil {
		return nil, err
	}
	n.upstream = s.goUpstream(ctx, up, (*upstream).secure)
	return n, nil
}

// clientTLS7 is the client leg of a TDS 7.x session: TLS carried inside
// PRELOGIN packets, or the plain connection for an allowed loopback
// client. Errors are *ended.
func (s *session) clientTLS7(hctx context.Context, pc *peekConn, n *negotiation) (leg, error) {
	client := leg{conn: pc, raw: s.raw}
	if n.plan == planPlain {
		s.audit.plain = true
		return client, nil
	}
	tc, err := tdstls.Server(hctx, pc, s.l.tds7TLS)
	if err != nil {
		var unexpected *tdstls.UnexpectedPacketError
		if errors.As(err, &unexpected) {
			// Typically LOGIN7 in clear text after NOT_SUP: nothing of it
			// was read beyond its header, and nothing goes upstream.
			return leg{}, &ended{outcome: outcomeRefusedEncryption, level: zapcore.WarnLevel,
				msg: "client refused encryption; closing", fields: []zap.Field{
					zap.String("client_encryption", s.audit.clientEncryption),
					zap.String("answered", s.audit.answered),
					zap.Stringer("packet_type", unexpected.Type)}}
		}
		return leg{}, s.handshakeFailed(err)
	}
	s.handshakeDone(tc)
	client.conn = tc
	return client, nil
}

// clientTLS8 is the client leg of a TDS 8 (strict) session: TLS first,
// ALPN tds/8.0. Every listener policy accepts TDS 8. Errors are *ended.
func (s *session) clientTLS8(hctx context.Context, pc *peekConn) (leg, error) {
	tc := tls.Server(pc, s.l.tds8TLS)
	if err := tc.HandshakeContext(hctx); err != nil {
		return leg{}, s.handshakeFailed(err)
	}
	s.handshakeDone(tc)
	return leg{conn: tc, raw: s.raw}, nil
}

// handshakeDone records a client handshake that succeeded.
func (s *session) handshakeDone(tc *tls.Conn) {
	s.audit.steps.clientTLS = time.Since(s.start)
	cs := tc.ConnectionState()
	s.audit.clientTLS = &cs
	s.l.opts.metrics.handshake(s.l.cfg.Name, tlsmgr.HandshakeVersion(cs.Version), tlsmgr.HandshakeOK)
}

// handshakeFailed counts a failed client handshake and says why it ended
// the session.
func (s *session) handshakeFailed(err error) *ended {
	s.l.opts.metrics.handshake(s.l.cfg.Name, tlsmgr.HandshakeVersion(0), tlsmgr.HandshakeFailure(err))
	msg := "client TLS handshake failed; closing"
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		msg = "client TLS handshake timed out; closing"
	}
	return &ended{outcome: outcomeHandshakeFailed, level: zapcore.WarnLevel, msg: msg,
		fields: []zap.Field{zap.String("dialect", s.audit.dialect)}, err: err}
}

// readClientPrelogin reads and decodes the client's PRELOGIN message.
func (s *session) readClientPrelogin(r io.Reader) (*tds.Prelogin, error) {
	tr := tds.NewReader(r)
	tr.SetMaxMessageSize(maxPreloginSize)
	msg, err := tr.ReadMessage(nil)
	if err != nil {
		return nil, readFailed("reading PRELOGIN", err)
	}
	if msg.Type != tds.PacketPrelogin {
		return nil, malformedInput(fmt.Sprintf("%s message before PRELOGIN", msg.Type), nil)
	}
	pl, err := tds.ParsePrelogin(msg.Payload)
	if err != nil {
		return nil, malformedInput("decoding PRELOGIN", err)
	}
	return pl, nil
}

// answerPrelogin writes the gateway's PRELOGIN answer to the client.
func (s *session) answerPrelogin(w io.Writer, enc tds.Encryption, client *tds.Prelogin, up *upstream) error {
	a := buildAnswer(enc, client, up)
	s.audit.mars = a.MARS != nil && *a.MARS
	payload, err := a.MarshalBinary()
	if err == nil {
		err = tds.NewWriter(w).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: payload})
	}
	if err != nil {
		return readFailed("answering PRELOGIN", err)
	}
	return nil
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

// encryptionName is the ENCRYPTION value as sent, for logs.
func encryptionName(e *tds.Encryption) string {
	if e == nil {
		return "absent"
	}
	return e.String()
}
