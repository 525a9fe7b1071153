package sqltunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// upstream is the session's connection to the SQL Server, built in steps
// (dial, prelogin, secure) that each do nothing once one has failed. A
// failure is kept in err as the refusal the client will be sent after its
// LOGIN7: the login is then never forwarded.
//
// The steps may run on a helper goroutine (see goUpstream); the session
// reads the fields only after waiting for it.
type upstream struct {
	s        *session
	target   configs.UpstreamAddress
	addr     string // target as written, for messages
	tls      upstreamTLS
	mode     configs.UpstreamEncryption
	routed   bool      // a server the configured upstream routed the login to
	deadline time.Time // bound of dial + PRELOGIN + TLS (DialTimeout)

	raw      net.Conn // the TCP connection
	conn     net.Conn // carries TDS packets: raw, or a *tls.Conn over it
	reply    *tds.Prelogin
	tlsState *tls.ConnectionState
	err      *refusal

	securedAt time.Time // when its TLS handshake ended
}

// newUpstream is the configured upstream, not yet dialled.
func (s *session) newUpstream() *upstream {
	return &upstream{s: s, target: s.l.upAddr, addr: s.l.cfg.Upstream.Address, tls: s.l.upTLS, mode: s.l.cfg.Upstream.Encryption}
}

// close closes the upstream's connection, if any.
func (u *upstream) close() {
	if u.raw != nil {
		_ = u.raw.Close()
	}
}

// dial connects and, for a strict upstream, runs the TLS handshake with ALPN
// tds/8.0 (TDS 8: TLS before PRELOGIN).
func (u *upstream) dial(ctx context.Context) {
	if u.err != nil || u.raw != nil {
		return
	}
	u.deadline = deadline(time.Now(), u.s.l.opts.dialTimeout)
	ctx, cancel := withDeadline(ctx, u.deadline)
	defer cancel()
	c, err := u.s.l.dialUpstream(ctx, u.target)
	// The listener's health is its configured upstream's; a server it
	// routed to does not count.
	if err != nil {
		u.err = upstreamUnreachable(u.addr, err)
		if !u.routed && !errors.Is(ctx.Err(), context.Canceled) { // not the client leaving
			u.s.l.upstreamReached(false, err)
		}
		return
	}
	if !u.routed {
		u.s.l.upstreamReached(true, nil)
	}
	u.s.track(c)
	u.raw, u.conn = c, c
	_ = c.SetDeadline(u.deadline)

	switch u.mode {
	case configs.UpstreamEncryptionDisabledLoopback:
		// New checked the configured host; this checks where "localhost"
		// or a custom dialer actually went.
		if !isLoopback(c.RemoteAddr()) {
			u.err = upstreamNotLoopback(u.addr, c.RemoteAddr())
		}
	case configs.UpstreamEncryptionStrict:
		tc := tls.Client(c, u.tls.tds8)
		if err := tc.HandshakeContext(ctx); err != nil {
			u.err = upstreamTLSFailed(u.addr, err)
			return
		}
		u.established(tc)
	}
}

// prelogin sends the gateway's PRELOGIN, built from the client's, and checks
// the encryption the upstream answers.
func (u *upstream) prelogin(ctx context.Context, client *tds.Prelogin) {
	if u == nil || u.err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = u.raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	enc := tds.EncryptOn
	if u.mode == configs.UpstreamEncryptionDisabledLoopback {
		enc = tds.EncryptNotSup
	}
	payload, err := upstreamPrelogin(client, enc, u.target.Instance).MarshalBinary()
	if err == nil {
		err = tds.NewWriter(u.conn).WriteMessage(tds.Message{Type: tds.PacketPrelogin, Status: tds.StatusEOM, Payload: payload})
	}
	if err != nil {
		u.err = upstreamIOFailed(u.addr, "sending PRELOGIN", err)
		return
	}
	r := tds.NewReader(u.conn)
	r.SetMaxMessageSize(maxPreloginSize)
	msg, err := r.ReadMessage(nil)
	if err != nil {
		u.err = upstreamIOFailed(u.addr, "reading the PRELOGIN answer", err)
		return
	}
	if msg.Type != tds.PacketReply {
		u.err = upstreamProtocol(u.addr, "answered PRELOGIN with a "+msg.Type.String()+" message", nil)
		return
	}
	reply, err := tds.ParsePrelogin(msg.Payload)
	if err != nil {
		u.err = upstreamProtocol(u.addr, "sent an invalid PRELOGIN answer", err)
		return
	}
	if reply.InstanceMismatch() {
		u.err = upstreamProtocol(u.addr, "reported an instance name mismatch", nil)
		return
	}
	u.reply = reply

	answered := encryptionName(reply.Encryption)
	mode := tds.Encryption(0xFF)
	if reply.Encryption != nil {
		mode = reply.Encryption.Mode()
	}
	switch u.mode {
	case configs.UpstreamEncryptionStrict:
		// TDS 8: already inside TLS; the option is ignored (MS-TDS 2.2.6.5).
	case configs.UpstreamEncryptionRequired:
		// ON and REQ mean full encryption. OFF would be login-only
		// encryption and NOT_SUP none: the login must not be sent.
		if mode != tds.EncryptOn && mode != tds.EncryptReq {
			u.err = upstreamNoEncryption(u.addr, answered)
		}
	case configs.UpstreamEncryptionDisabledLoopback:
		if mode != tds.EncryptNotSup {
			u.err = upstreamWantsEncryption(u.addr, answered)
		}
	}
}

// upstreamPrelogin is the PRELOGIN the gateway sends upstream: our VERSION
// and ENCRYPTION; the client's MARS, THREADID, TRACEID, FEDAUTHREQUIRED and
// NONCEOPT, which only make sense end to end; and INSTOPT naming the
// upstream's instance: the instance of a host\INSTANCE address, so that
// SQL Server checks the Browser's port led to it (prelogin refuses a
// mismatch), else the default instance (a lone NUL, as go-mssqldb sends
// without an instance name), whose port already selects it. The name a
// client put in its own INSTOPT refers to the gateway and is not forwarded.
// Options the codec does not know are dropped.
func upstreamPrelogin(client *tds.Prelogin, enc tds.Encryption, instance string) *tds.Prelogin {
	return &tds.Prelogin{
		Version:         gatewayVersion,
		Encryption:      new(enc),
		InstOpt:         tds.InstanceOpt(instance),
		ThreadID:        client.ThreadID,
		MARS:            client.MARS,
		TraceID:         client.TraceID,
		FedAuthRequired: client.FedAuthRequired,
		Nonce:           client.Nonce,
	}
}

// secure runs the TDS 7.x TLS handshake inside PRELOGIN packets toward a
// required upstream, verified by the upstream TLS configuration.
func (u *upstream) secure(ctx context.Context) {
	if u == nil || u.err != nil || u.mode != configs.UpstreamEncryptionRequired {
		return
	}
	ctx, cancel := withDeadline(ctx, u.deadline)
	defer cancel()
	tc, err := tdstls.Client(ctx, u.raw, u.tls.tds7)
	if err != nil {
		u.err = upstreamTLSFailed(u.addr, err)
		return
	}
	u.established(tc)
}

// established records the upstream TLS session and, when verification is
// disabled, says so on every connection with the fingerprint the operator
// can pin instead.
func (u *upstream) established(tc *tls.Conn) {
	u.securedAt = time.Now()
	u.conn = tc
	cs := tc.ConnectionState()
	u.tlsState = &cs
	if u.s.l.cfg.Upstream.InsecureSkipVerify {
		fp := ""
		if len(cs.PeerCertificates) > 0 {
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			fp = hex.EncodeToString(sum[:])
		}
		u.s.log.Warn("upstream certificate not verified (insecure_skip_verify); pin it with upstream.pin_sha256",
			zap.String("upstream", u.addr), zap.String("upstream_sha256", fp))
	}
}

// pending is an upstream step running on a helper goroutine.
type pending struct {
	u      *upstream
	done   chan struct{}
	cancel context.CancelFunc
}

// goUpstream runs step(u, ctx) on a helper goroutine, so that the upstream
// and client legs make progress at the same time. With a nil or failed u it
// does nothing.
func (s *session) goUpstream(ctx context.Context, u *upstream, step func(*upstream, context.Context)) *pending {
	p := &pending{u: u, done: make(chan struct{}), cancel: func() {}}
	if u == nil || u.err != nil {
		close(p.done)
		return p
	}
	ctx, p.cancel = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in the upstream leg", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				u.err = upstreamProtocol(u.addr, "internal error", fmt.Errorf("panic: %v", r))
			}
		}()
		step(u, ctx)
	}()
	return p
}

// wait returns the upstream once the step is over.
func (p *pending) wait() *upstream {
	<-p.done
	p.cancel()
	return p.u
}

// abort cancels the step and waits for it to stop; on nil it does nothing.
func (p *pending) abort() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}
