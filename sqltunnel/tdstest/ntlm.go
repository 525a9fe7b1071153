package tdstest

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/internal/ntlmtest"
	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Integrated authentication (MS-TDS 3.2.5.1, 3.3.5.2): the LOGIN7 carries
// the client's first SSPI message (an NTLM NEGOTIATE); the server answers
// with an SSPI token (0xED) holding its CHALLENGE; the client sends its
// AUTHENTICATE in an SSPI message (packet type 0x11); the server answers
// that with the login reply. Only raw NTLMSSP is accepted, as go-mssqldb
// and FreeTDS send it; SPNEGO and Kerberos get 18452.

// tokenSSPI is the SSPI token type.
const tokenSSPI = 0xED

// LOGIN7 offsets of the SSPI field (MS-TDS 2.2.6.4): ibSSPI and cbSSPI in
// the fixed part, cbSSPILong (TDS 7.2 and later) when cbSSPI is 0xFFFF.
const (
	login7IbSSPI      = 78
	login7CbSSPILong  = 90
	login7FixedLen72  = 94
	defaultNTLMDomain = "CORP"
)

// sspiOf returns the SSPI bytes of a LOGIN7 payload.
func sspiOf(payload []byte) ([]byte, error) {
	if len(payload) < login7IbSSPI+4 {
		return nil, errors.New("LOGIN7 too short for its SSPI field")
	}
	off := int(binary.LittleEndian.Uint16(payload[login7IbSSPI:]))
	n := int(binary.LittleEndian.Uint16(payload[login7IbSSPI+2:]))
	if n == 0xFFFF && len(payload) >= login7FixedLen72 {
		n = int(binary.LittleEndian.Uint32(payload[login7CbSSPILong:]))
	}
	if off+n > len(payload) {
		return nil, fmt.Errorf("LOGIN7 SSPI field %d+%d beyond its %d bytes", off, n, len(payload))
	}
	return payload[off : off+n], nil
}

// ntlmLogin runs the NTLM exchange of an integrated login on conn. It
// returns the database, or the ERROR tokens of the refusal.
func (ss *session) ntlmLogin(conn net.Conn, payload []byte) (string, []tds.ErrorInfo, error) {
	blob, err := sspiOf(payload)
	if err != nil {
		return "", nil, fail(OutcomeProtocolError, err)
	}
	if ntlmtest.MessageType(blob) != 1 {
		// Kerberos or SPNEGO: a domain this server does not trust.
		return "", ss.loginFailed(msgUntrustedDomain, 18452), nil
	}
	domain := ss.cfg.NTLMDomain
	if domain == "" {
		domain = defaultNTLMDomain
	}
	challenge, serverChallenge := ntlmtest.Challenge(domain, strings.ToUpper(ss.cfg.serverName()))
	token := append([]byte{tokenSSPI, 0, 0}, challenge...)
	binary.LittleEndian.PutUint16(token[1:], uint16(len(challenge)))
	if err := ss.w.message(token); err != nil {
		return "", nil, err
	}
	msg, err := tds.NewReader(conn).ReadMessage(nil)
	if err != nil {
		return "", nil, fail(OutcomeProtocolError, fmt.Errorf("reading the SSPI message: %w", err))
	}
	if msg.Type != tds.PacketSSPI {
		return "", nil, fail(OutcomeProtocolError, fmt.Errorf("%s message where SSPI was expected", msg.Type))
	}
	a, err := ntlmtest.Verify(msg.Payload, serverChallenge, ss.cfg.NTLMUsers)
	ss.update(func(r *SessionRecord) { r.User = a.Name(); r.AuthScheme = "NTLM" })
	if err != nil {
		ss.log.Debug("ntlm refused", zap.String("user", a.Name()), zap.Error(err))
		return "", ss.loginFailed(fmt.Sprintf("Login failed for user '%s'.", a.Name()), 18456), nil
	}
	if ss.cfg.ExtendedProtection {
		var want [][]byte
		if tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
			want = ntlmtest.ServerChannelBindings(ss.leaf(), tc.ConnectionState())
		}
		if err := ntlmtest.CheckChannelBinding(a.ChannelBinding, want); err != nil {
			ss.log.Debug("ntlm refused: extended protection", zap.String("user", a.Name()), zap.Error(err))
			return "", ss.loginFailed(msgUntrustedDomain, 18452), nil
		}
	}
	return ss.cfg.database(), nil, nil
}

// leaf is the DER certificate the server presents.
func (ss *session) leaf() []byte {
	if c := ss.srv.tlsCfg.Certificates; len(c) > 0 && len(c[0].Certificate) > 0 {
		return c[0].Certificate[0]
	}
	return nil
}
