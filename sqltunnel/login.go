package sqltunnel

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

const (
	// maxLoginRounds bounds the messages exchanged during one login
	// (SSPI and FedAuth round trips, continuation messages). NTLM needs two
	// round trips and Kerberos one or two; FedAuth one.
	maxLoginRounds = 16
	// loginPacketSize is the packet size of the messages the gateway
	// re-packetizes upstream during the login (LOGIN7, SSPI, FedAuth token):
	// the pre-login size every server accepts before ENVCHANGE.
	loginPacketSize = tds.DefaultPacketSize
)

// login runs the login phase on the client leg (already encrypted, or plain
// for an allowed loopback client): read LOGIN7, refuse it or forward it
// unchanged once the upstream is secure, relay the upstream's reply and any
// SSPI or FedAuth round trips, then hand over to the relay. refuse, when
// set, is sent instead of forwarding. Exactly one "sql login" line is logged.
func (s *session) login(client leg, up *pending, refuse *refusal) {
	loginStart := time.Now()
	loginDeadline := deadline(loginStart, s.l.opts.loginTimeout)
	_ = client.conn.SetDeadline(loginDeadline)

	cr := tds.NewReader(client.conn)
	_ = cr.SetMaxPacketSize(tds.MaxPacketSize) // LOGIN7 may come in packets of the requested size
	msg, err := cr.ReadMessage(nil)
	if err != nil {
		up.abort()
		s.readFailed("reading LOGIN7", err)
		return
	}
	if msg.Type != tds.PacketLogin7 {
		up.abort()
		s.malformed(fmt.Sprintf("%s message where LOGIN7 was expected", msg.Type), nil)
		return
	}
	// From here on every path writes the audit line once, before the
	// client hears the outcome; the deferred call covers unexpected exits.
	s.audit.loginStart = loginStart
	defer s.logLogin()

	login, err := tds.ParseLogin7(msg.Payload)
	if err != nil {
		clear(msg.Payload)
		up.abort()
		s.refuse(client, 0, malformedLogin(err))
		return
	}
	s.audit.login = login
	ver := login.TDSVersion
	if refuse != nil {
		clear(msg.Payload)
		up.abort()
		s.refuse(client, ver, refuse)
		return
	}

	u := up.wait()
	s.audit.upstream(u)
	if u.err != nil {
		clear(msg.Payload)
		s.refuse(client, ver, u.err)
		return
	}
	upLeg := leg{conn: u.conn, raw: u.raw}
	_ = u.raw.SetDeadline(loginDeadline)
	uw := tds.NewWriter(u.conn) // packet size: loginPacketSize
	err = s.forward(uw, msg)
	clear(msg.Payload) // the password is obfuscated, not encrypted
	if err != nil {
		s.refuse(client, ver, upstreamIOFailed(u.addr, "sending LOGIN7", err))
		return
	}

	uf := newFramer(u.conn, tds.MaxPacketSize, false)
	defer uf.release()
	var reply loginReply
	for round := 0; ; round++ {
		if round == maxLoginRounds {
			s.refuse(client, ver, upstreamProtocol(u.addr, fmt.Sprintf("did not finish the login in %d messages", maxLoginRounds), nil))
			return
		}
		m, err := uf.readMessage(tds.DefaultMaxMessageSize)
		if err != nil {
			s.refuse(client, ver, upstreamIOFailed(u.addr, "reading the login reply", err))
			return
		}
		if m.typ != tds.PacketReply {
			s.refuse(client, ver, upstreamProtocol(u.addr, "answered the login with a "+m.typ.String()+" message", nil))
			return
		}
		r, err := inspectReply(m.payload, ver)
		if err != nil {
			s.refuse(client, ver, upstreamProtocol(u.addr, "sent a login reply the gateway cannot read", err))
			return
		}
		if r.routing != nil {
			// A client that follows the routing connects to the server
			// directly, around the gateway and its encryption policy.
			s.refuse(client, ver, routingRefused(*r.routing))
			return
		}
		reply.merge(r)
		switch {
		case r.final && reply.ack != nil:
			s.audit.success(&reply)
		case r.final:
			// The upstream refused the login (18456 and friends); the
			// server closes the session after this reply.
			s.audit.failed(&reply)
		}
		if r.final {
			s.logLogin()
		}
		if err := writePackets(client.conn, m); err != nil {
			if !s.audit.logged {
				s.audit.outcome, s.audit.reason = outcomeClientGone, "relaying the login reply: "+err.Error()
			}
			s.log.Info("client left before the login reply was relayed", zap.Error(err))
			return
		}
		s.toClient.Add(int64(m.size))

		switch {
		case r.final && reply.ack != nil:
			_ = client.conn.SetDeadline(time.Time{})
			_ = u.raw.SetDeadline(time.Time{})
			// The relay has framers of its own; holding this one's
			// buffer would cost a 32 KiB frame per session for its life.
			uf.release()
			// After a login with MARS on both sides, framing is SMP.
			s.relay(client, upLeg, reply.relayPacketSize(login), s.audit.mars)
			return
		case r.final:
			lingerClose(client)
			return
		case r.sspi || r.fedAuthInfo:
			// The client answers with an SSPI (0x11) or FedAuth token
			// (0x08) message, relayed untouched and never logged.
			cm, err := cr.ReadMessage(nil)
			if err != nil {
				s.audit.outcome = outcomeClientGone
				s.audit.reason = "reading the client's authentication message: " + err.Error()
				return
			}
			if cm.Type != tds.PacketSSPI && cm.Type != tds.PacketFedAuthToken {
				clear(cm.Payload)
				s.audit.outcome = outcomeRefused
				s.audit.reason = fmt.Sprintf("%s message during the login, where SSPI or a FedAuth token was expected", cm.Type)
				s.malformed(s.audit.reason, nil)
				return
			}
			err = s.forward(uw, cm)
			clear(cm.Payload)
			if err != nil {
				s.refuse(client, ver, upstreamIOFailed(u.addr, "sending the authentication message", err))
				return
			}
		}
		// Otherwise the reply continues in another message: read it.
	}
}

// forward writes a client message upstream in loginPacketSize packets.
func (s *session) forward(w *tds.Writer, m tds.Message) error {
	m.Status |= tds.StatusEOM
	if err := w.WriteMessage(m); err != nil {
		return err
	}
	s.toUpstream.Add(int64(wireSize(len(m.Payload), loginPacketSize)))
	return nil
}

// wireSize is the number of bytes a payload of n bytes takes in packets of
// packetSize: the payload and one header per packet (at least one packet).
func wireSize(n, packetSize int) int {
	per := packetSize - tds.HeaderLen
	packets := max((n+per-1)/per, 1)
	return n + packets*tds.HeaderLen
}

// replyInfo is what one message of the upstream's login reply says.
type replyInfo struct {
	ack         *tds.LoginAck
	err         *tds.ErrorInfo // the first ERROR
	packetSize  int            // from ENVCHANGE type 4; 0 if absent
	routing     *tds.Routing
	final       bool // a DONE without DoneMore: the reply is complete
	sspi        bool // an SSPI token: the client must answer
	fedAuthInfo bool // a FEDAUTHINFO token: the client must answer
}

// inspectReply scans a login reply message for the tokens the gateway acts
// on. Other tokens (INFO, FEATUREEXTACK, SESSIONSTATE, other ENVCHANGEs) are
// relayed without being decoded; SSPI and FEDAUTHINFO are only noted.
func inspectReply(payload []byte, ver tds.TDSVersion) (replyInfo, error) {
	var r replyInfo
	sc := tds.NewTokenScanner(payload, ver)
	for sc.Scan() {
		tok := sc.Token()
		switch tok.Type {
		case tds.TokenLoginAck:
			a, err := tds.ParseLoginAck(tok.Raw)
			if err != nil {
				return r, err
			}
			r.ack = &a
		case tds.TokenError:
			if r.err == nil {
				e, err := tds.ParseErrorInfo(tok.Raw)
				if err != nil {
					return r, err
				}
				r.err = &e
			}
		case tds.TokenEnvChange:
			ec, err := tds.ParseEnvChange(tok.Raw)
			if err != nil {
				return r, err
			}
			switch ec.Type {
			case tds.EnvPacketSize:
				if r.packetSize, err = ec.PacketSize(); err != nil {
					return r, err
				}
			case tds.EnvRouting, tds.EnvEnhancedRouting:
				rt, err := ec.Routing()
				if err != nil {
					// Undecodable routing is still routing: refuse it.
					rt = tds.Routing{Server: "(undecodable)"}
				}
				r.routing = &rt
			}
		case tds.TokenDone:
			d, err := tds.ParseDone(tok.Raw)
			if err != nil {
				return r, err
			}
			if d.Status&tds.DoneMore == 0 {
				r.final = true
			}
		case tds.TokenSSPI:
			r.sspi = true
		case tds.TokenFedAuthInfo:
			r.fedAuthInfo = true
		}
	}
	return r, sc.Err()
}

// loginReply accumulates the messages of one login's reply.
type loginReply struct {
	ack        *tds.LoginAck
	err        *tds.ErrorInfo
	packetSize int
}

func (l *loginReply) merge(r replyInfo) {
	if r.ack != nil {
		l.ack = r.ack
	}
	if r.err != nil && l.err == nil {
		l.err = r.err
	}
	if r.packetSize != 0 {
		l.packetSize = r.packetSize
	}
}

// relayPacketSize is the largest packet either side may send after the
// login: the size the server's ENVCHANGE set; without one, the size the
// client asked for. Never below the pre-login size, which both sides may
// keep using when nothing was negotiated.
func (l *loginReply) relayPacketSize(login *tds.Login7) int {
	n := l.packetSize
	if n == 0 {
		n = int(min(login.PacketSize, tds.MaxPacketSize))
	}
	return max(n, tds.DefaultPacketSize)
}
