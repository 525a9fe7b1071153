package tdstest

import (
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// serverVersion is the PRELOGIN VERSION and LOGINACK ProgVersion this server
// announces: SQL Server 2022 RTM.
var serverVersion = tds.Version{Major: 16, Minor: 0, Build: 1000, SubBuild: 6}

// answerEncryption returns the PRELOGIN ENCRYPTION answer of a server with
// setting s to a client that sent c, and whether the server then closes the
// connection (MS-TDS 2.2.6.5, whose table docs/architecture.md repeats under
// "TDS encryption policy"). The client-certificate
// bit is not supported and ignored, except with NOT_SUP where MS-TDS
// terminates the connection. Values MS-TDS does not define are treated as
// ON (the client asks for encryption).
func answerEncryption(s Encryption, c tds.Encryption) (answer tds.Encryption, closeAfter bool) {
	mode := c.Mode()
	if mode > tds.EncryptReq {
		mode = tds.EncryptOn
	}
	switch s {
	case EncryptForced:
		switch mode {
		case tds.EncryptOff:
			return tds.EncryptReq, false
		case tds.EncryptNotSup:
			return tds.EncryptReq, true
		}
		return tds.EncryptOn, false
	case EncryptNotSupported:
		return tds.EncryptNotSup, c.ClientCert()
	default: // EncryptOff
		switch mode {
		case tds.EncryptOff:
			return tds.EncryptOff, false
		case tds.EncryptNotSup:
			return tds.EncryptNotSup, c.ClientCert()
		}
		return tds.EncryptOn, false
	}
}

// modeFor returns the encryption a TDS 7.x session gets once the server
// answered answer to a client that sent client, as the server sees it:
// NOT_SUP means none, OFF to a client that sent OFF means login-only, and
// every other combination full TLS (a client that does not accept the answer
// closes the connection instead).
func modeFor(client, answer tds.Encryption) Mode {
	switch answer.Mode() {
	case tds.EncryptNotSup:
		return ModeNone
	case tds.EncryptOff:
		if client.Mode() == tds.EncryptOff {
			return ModeLoginOnly
		}
	}
	return ModeFull
}

// clientEncryption returns the client's ENCRYPTION value; an absent option
// counts as OFF.
func clientEncryption(p *tds.Prelogin) tds.Encryption {
	if p.Encryption == nil {
		return tds.EncryptOff
	}
	return *p.Encryption
}

// readPrelogin reads and decodes the client's PRELOGIN and records it.
func (ss *session) readPrelogin(r *tds.Reader) (*tds.Prelogin, error) {
	m, err := r.ReadMessage(nil)
	if err != nil {
		if isDecodeError(err) {
			return nil, fail(OutcomeProtocolError, fmt.Errorf("reading PRELOGIN: %w", err))
		}
		return nil, err
	}
	if m.Type != tds.PacketPrelogin {
		return nil, fail(OutcomeProtocolError, fmt.Errorf("expected PRELOGIN, got a %s message", m.Type))
	}
	p, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		return nil, fail(OutcomeProtocolError, fmt.Errorf("decoding PRELOGIN: %w", err))
	}
	ss.update(func(r *SessionRecord) {
		r.ClientPrelogin = true
		r.ClientEncryption = clientEncryption(p)
		r.ClientVersion = p.Version
		r.Instance = p.Instance()
	})
	ss.log.Debug("prelogin", zap.Stringer("prelogin", p))
	return p, nil
}

// writePrelogin sends the PRELOGIN answer: VERSION, ENCRYPTION, INSTOPT
// (0: the instance matched; 1 when the client named an instance other than
// Config.Instance, as SQL Server answers), THREADID, MARS off, and
// FEDAUTHREQUIRED echoed when the client sent it.
func (ss *session) writePrelogin(w io.Writer, client *tds.Prelogin, answer tds.Encryption) error {
	instOpt := byte(0)
	if name := client.Instance(); name != "" && !strings.EqualFold(name, "MSSQLServer") && !strings.EqualFold(name, ss.srv.cfg.Instance) {
		instOpt = 1
	}
	reply := tds.Prelogin{
		Version:    serverVersion,
		Encryption: &answer,
		InstOpt:    []byte{instOpt},
		ThreadID:   new(uint32(ss.spid)),
		MARS:       new(false),
	}
	if client.FedAuthRequired != nil {
		reply.FedAuthRequired = new(*client.FedAuthRequired)
	}
	payload, err := reply.AppendBinary(nil)
	if err != nil {
		return fmt.Errorf("encoding PRELOGIN answer: %w", err)
	}
	ss.update(func(r *SessionRecord) { r.AnsweredEncryption = answer })
	return newReplyWriter(w, tds.DefaultPacketSize, 0).message(payload)
}
