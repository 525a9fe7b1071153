package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// sqlListener checks one TDS listener from outside: what it answers to
// clients asking for login-only or no encryption, the TLS it accepts in
// both dialects, and its certificate.
func (a *auditor) sqlListener(ctx context.Context, l configs.SQLListener) {
	i := a.sqlIndex(l.Name)
	id := "sql." + l.Name
	addr := a.listenerAddr("sql", l.Name, l.Listen)
	if addr == "" {
		a.r.add(Check{ID: id + ".scan", Section: "listeners", Subject: "sql listener " + l.Name, Title: "SQL listener scanned",
			Verdict: NotRun, Finding: "sql[" + itoa(i) + "].listen has port 0 and no running gateway said which port it got."})
		return
	}
	subject := fmt.Sprintf("sql listener %s %s", l.Name, addr)
	scan := Scan{Kind: "sql", Name: l.Name, Address: addr, Certificates: []CertReport{}}
	key := fmt.Sprintf("sql[%d].client_encryption", i)

	scan.AnswerToOff = answerTo(ctx, addr, tds.EncryptOff)
	c := Check{ID: id + ".encrypt_off", Section: "listeners", Subject: subject, Title: "A client asking for login-only encryption (OFF)"}
	switch scan.AnswerToOff {
	case "REQ", "closed":
		c.Verdict, c.Finding = Pass, "answered "+scan.AnswerToOff+": the client must encrypt the whole session"
	default:
		c.Verdict, c.Key = Fail, key
		c.Finding = "answered " + scan.AnswerToOff + ": the session could run with only the login encrypted, or none"
		c.Fix = "set " + key + " to required or strict"
	}
	a.r.add(c)

	scan.AnswerToNotSup = answerTo(ctx, addr, tds.EncryptNotSup)
	c = Check{ID: id + ".encrypt_not_sup", Section: "listeners", Subject: subject, Title: "A client that does not support encryption (NOT_SUP)"}
	switch {
	case scan.AnswerToNotSup == "REQ" || scan.AnswerToNotSup == "closed":
		c.Verdict, c.Finding = Pass, "answered "+scan.AnswerToNotSup+": such a client is refused unless it starts TLS"
	case scan.AnswerToNotSup == "NOT_SUP" && l.ClientEncryption == configs.ClientEncryptionAllowPlaintextLoopback:
		c.Verdict, c.Key = Warn, key
		c.Finding = "answered NOT_SUP to this audit, which connects from loopback: allow_plaintext_loopback serves plain clients on this host (sidecar mode); others get REQ"
		c.Fix = "keep it only for applications on this host; set " + key + " to required otherwise"
	default:
		c.Verdict, c.Key = Fail, key
		c.Finding = "answered " + scan.AnswerToNotSup + ": a client could log in without encryption"
		c.Fix = "set " + key + " to required or strict"
	}
	a.r.add(c)

	tds8 := tlsFirstALPN(addr, "tds/8.0")
	ts8 := scanTLS(ctx, tds8, l.Hostname, []string{"tds/8.0"}, tls.VersionTLS13)
	scan.Versions, scan.Refused, scan.Suites, scan.TLS13Suite, scan.ALPN = ts8.accepted, ts8.refused, ts8.suites, ts8.tls13Suite, ts8.alpn
	a.protocolChecks(id+".tds8", subject+" (TDS 8, TLS first)", ts8, "tls.min_version")
	if l.ClientEncryption != configs.ClientEncryptionStrict {
		ts7 := scanTLS(ctx, inPrelogin(addr), l.Hostname, nil, tls.VersionTLS12)
		a.protocolChecks(id+".tds7", subject+" (TDS 7.x, TLS inside PRELOGIN)", ts7, "tls.min_version")
	}
	cr, err := chainFor(ctx, tds8, l.Hostname, a.roots)
	if err != nil {
		a.r.add(Check{ID: id + ".certificate", Section: "listeners", Subject: l.Hostname, Title: "Certificate for " + l.Hostname,
			Verdict: Fail, Finding: "no TLS handshake: " + err.Error(), Fix: "see the gateway's log", Key: fmt.Sprintf("sql[%d].hostname", i)})
	} else {
		scan.Certificates = append(scan.Certificates, cr)
		a.certCheck(id+".certificate", l.Hostname+" on "+subject, l.Hostname, cr)
	}
	a.r.Listeners = append(a.r.Listeners, scan)
}

// tlsFirstALPN is tlsFirst offering one ALPN protocol whatever the config
// says (TDS 8 needs tds/8.0).
func tlsFirstALPN(addr, proto string) handshaker {
	hs := tlsFirst(addr)
	return func(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{proto}
		return hs(ctx, cfg)
	}
}

// answerTo sends a PRELOGIN asking for enc and names the answer: the
// ENCRYPTION value, "closed" when the listener hung up instead, or the
// error.
func answerTo(ctx context.Context, addr string, enc tds.Encryption) string {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := dial(ctx, addr)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	ans, err := prelogin(c, enc)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err):
		return "closed"
	case err != nil:
		return "error: " + err.Error()
	case ans.Encryption == nil:
		return "OFF" // absent means OFF (MS-TDS 2.2.6.5)
	}
	return ans.Encryption.Mode().String()
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

// sqlIndex is the position of the listener named in sql[].
func (a *auditor) sqlIndex(name string) int {
	for i, l := range a.o.Config.SQL {
		if l.Name == name {
			return i
		}
	}
	return -1
}
