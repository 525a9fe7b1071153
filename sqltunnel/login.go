package sqltunnel

import (
	"fmt"
	"time"

	"github.com/gateway-project/gateway/configs"

	"go.uber.org/zap/zapcore"

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

// clientLogin is the client's LOGIN7 as read: the message, kept to be
// forwarded unchanged, its decoded safe fields, and the reader of the client
// leg, which the login exchange goes on reading SSPI and FedAuth messages
// from.
type clientLogin struct {
	msg    tds.Message
	login  *tds.Login7
	reader *tds.Reader
	// deadline bounds the whole login phase, both legs (login_timeout).
	deadline time.Time
}

// clear wipes the message: its password is obfuscated, not encrypted. It
// may be called more than once, and on nil.
func (c *clientLogin) clear() {
	if c != nil {
		clear(c.msg.Payload)
	}
}

// done wipes the message and lets go of the client reader once the login
// exchange is over: its 32 KiB packet buffer would otherwise stay with the
// session for its life. It may be called on nil.
func (c *clientLogin) done() {
	if c != nil {
		c.clear()
		c.reader = nil
	}
}

// readLogin7 reads the client's LOGIN7 under the login deadline. Once it
// has arrived, the session owes an audit line: errors after that are
// refusals (malformedLogin), before it *ended.
func (s *session) readLogin7(client leg) (*clientLogin, error) {
	start := time.Now()
	c := &clientLogin{deadline: deadline(start, s.l.opts.loginTimeout)}
	_ = client.conn.SetDeadline(c.deadline)
	c.reader = tds.NewReader(client.conn)
	_ = c.reader.SetMaxPacketSize(tds.MaxPacketSize) // LOGIN7 may come in packets of the requested size
	msg, err := c.reader.ReadMessage(nil)
	if err != nil {
		return nil, readFailed("reading LOGIN7", err)
	}
	if msg.Type != tds.PacketLogin7 {
		return nil, malformedInput(fmt.Sprintf("%s message where LOGIN7 was expected", msg.Type), nil)
	}
	c.msg = msg
	s.audit.loginStart = start
	s.audit.steps.login7 = time.Since(s.start)
	login, err := tds.ParseLogin7(msg.Payload)
	if err != nil {
		return c, malformedLogin(err)
	}
	c.login = login
	s.audit.login = login
	return c, nil
}

// upstreamReady waits for the upstream's handshake and verification to
// finish, and returns the upstream or the refusal its failure calls for.
func (s *session) upstreamReady(p *pending) (*upstream, error) {
	waitStart := time.Now()
	u := p.wait()
	s.audit.steps.upstreamWait = time.Since(waitStart)
	s.audit.upstream(u)
	if u.err != nil {
		return nil, u.err
	}
	return u, nil
}

// abandoned ends a login without an ERROR reply to the client: the client
// left, or broke the protocol in the middle of the login.
type abandoned struct {
	outcome outcome
	reason  string // for the audit line
	line    *ended // the log line that says so, if any
}

func (a *abandoned) Error() string { return string(a.outcome) + ": " + a.reason }

// errLoginUntrustedDomain is SQL Server's error 18452, "Login failed. The
// login is from an untrusted domain and cannot be used with Integrated
// authentication.": among other causes, a channel binding that does not
// match (Extended Protection).
const errLoginUntrustedDomain = 18452

// loginExchange forwards the client's LOGIN7 unchanged to the upstream and
// relays the upstream's reply, and any SSPI or FedAuth round trips, until
// the reply is final. It writes the audit line before the final reply
// reaches the client, and returns the reply: with a LOGINACK the login
// succeeded and the relay follows; without, the upstream refused it. A
// routing ENVCHANGE is never relayed (a client that follows it connects
// around the gateway): route says whether the gateway follows it (a
// *routed error) or refuses it (50906).
func (s *session) loginExchange(client leg, u *upstream, c *clientLogin) (*loginReply, error) {
	ver := c.login.TDSVersion
	_ = u.raw.SetDeadline(c.deadline)
	uw := tds.NewWriter(u.conn) // packet size: loginPacketSize
	err := s.forward(uw, c.msg)
	if s.l.cfg.Upstream.Routing != configs.RoutingFollow || s.audit.routedTo != "" {
		c.clear() // it will not be replayed to a routed server
	}
	if err != nil {
		return nil, upstreamIOFailed(u.addr, "sending LOGIN7", err)
	}

	uf := newFramer(u.conn, tds.MaxPacketSize, false)
	// The relay has framers of its own; holding this one's buffer would
	// cost a 32 KiB frame per session for its life.
	defer uf.release()
	var reply loginReply
	authRounds := 0 // SSPI and FedAuth messages the client answered
	for round := 0; ; round++ {
		if round == maxLoginRounds {
			return nil, upstreamProtocol(u.addr, fmt.Sprintf("did not finish the login in %d messages", maxLoginRounds), nil)
		}
		m, err := uf.readMessage(tds.DefaultMaxMessageSize)
		if err != nil {
			return nil, upstreamIOFailed(u.addr, "reading the login reply", err)
		}
		if m.typ != tds.PacketReply {
			return nil, upstreamProtocol(u.addr, "answered the login with a "+m.typ.String()+" message", nil)
		}
		r, err := inspectReply(m.payload, ver)
		if err != nil {
			return nil, upstreamProtocol(u.addr, "sent a login reply the gateway cannot read", err)
		}
		if r.routing != nil {
			return nil, s.route(u, *r.routing, authRounds > 0)
		}
		reply.merge(r)
		if r.final && reply.ack == nil && c.login.Auth() == tds.AuthIntegrated &&
			reply.err != nil && reply.err.Number == errLoginUntrustedDomain {
			return nil, channelBindingRefused(u.addr, reply.err)
		}
		if r.final {
			s.audit.steps.loginReply = time.Since(s.start)
			s.audit.loginDone(&reply)
			s.logLogin()
		}
		if err := writePackets(client.conn, m); err != nil {
			return nil, &abandoned{outcome: outcomeClientGone, reason: "relaying the login reply: " + err.Error(),
				line: &ended{level: zapcore.InfoLevel, msg: "client left before the login reply was relayed", err: err}}
		}
		s.toClient.Add(int64(m.size))
		if r.final {
			_ = client.conn.SetDeadline(time.Time{})
			_ = u.raw.SetDeadline(time.Time{})
			return &reply, nil
		}
		if r.sspi || r.fedAuthInfo {
			// The client answers with an SSPI (0x11) or FedAuth token
			// (0x08) message, relayed untouched and never logged.
			if err := s.forwardAuth(c.reader, uw, u.addr); err != nil {
				return nil, err
			}
			authRounds++
		}
		// Otherwise the reply continues in another message: read it.
	}
}

// forwardAuth relays the client's answer to an SSPI or FEDAUTHINFO token.
func (s *session) forwardAuth(cr *tds.Reader, uw *tds.Writer, addr string) error {
	cm, err := cr.ReadMessage(nil)
	if err != nil {
		return &abandoned{outcome: outcomeClientGone, reason: "reading the client's authentication message: " + err.Error()}
	}
	defer clear(cm.Payload)
	if cm.Type != tds.PacketSSPI && cm.Type != tds.PacketFedAuthToken {
		reason := fmt.Sprintf("%s message during the login, where SSPI or a FedAuth token was expected", cm.Type)
		return &abandoned{outcome: outcomeRefused, reason: reason, line: malformedInput(reason, nil)}
	}
	if err := s.forward(uw, cm); err != nil {
		return upstreamIOFailed(addr, "sending the authentication message", err)
	}
	return nil
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
