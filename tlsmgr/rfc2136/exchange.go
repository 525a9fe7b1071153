package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// UpdateError is a server's refusal of an update (or of a query or zone
// transfer the provider made): the response code, and the TSIG error when
// the server rejected the signature (RFC 8945 section 5.2).
type UpdateError struct {
	Server  string
	Zone    string
	KeyName string // "" for an unsigned message
	Op      string // "update", "query" or "zone transfer"
	Rcode   int
	// TSIGError is the error field of the server's TSIG record: BADSIG
	// (wrong secret), BADKEY (unknown key name or algorithm) or BADTIME
	// (clocks apart by more than the fudge); 0 when none.
	TSIGError uint16
}

func (e *UpdateError) Error() string {
	key := "unsigned"
	if e.KeyName != "" {
		key = "signed with TSIG key " + e.KeyName
	}
	msg := fmt.Sprintf("rfc2136: server %s refused the %s of zone %s (%s): %s", e.Server, e.Op, e.Zone, key, rcodeName(e.Rcode))
	switch {
	case e.TSIGError == dns.RcodeBadSig:
		msg += " (TSIG BADSIG: the secret does not match the server's key)"
	case e.TSIGError == dns.RcodeBadKey:
		msg += " (TSIG BADKEY: the server has no key of that name and algorithm)"
	case e.TSIGError == dns.RcodeBadTime:
		msg += " (TSIG BADTIME: this machine's clock is off from the server's)"
	case e.Rcode == dns.RcodeRefused:
		msg += " (the server's update-policy or allow-update does not grant this key the record)"
	case e.Rcode == dns.RcodeNotAuth:
		msg += " (the server is not authoritative for the zone, or does not accept the key)"
	}
	return msg
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}

// exchange sends m to the server, signed when a key is set, under the
// provider's timeout and ctx, over UDP and again over TCP when the answer
// is truncated. op and zone name it in errors.
func (p *Provider) exchange(ctx context.Context, op, zone string, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: p.timeout()}
	if p.KeyName != "" {
		key := dns.Fqdn(p.KeyName)
		c.TsigSecret = map[string]string{key: p.Secret}
		m.SetTsig(key, algorithms[p.algorithm()], 300, time.Now().Unix())
	}
	r, _, err := c.ExchangeContext(ctx, m, p.Server)
	if err == nil && r != nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, p.Server)
	}
	if r != nil && r.Rcode != dns.RcodeSuccess {
		return r, p.refusal(op, zone, r)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("rfc2136: %s of zone %s: no answer from server %s within %s: %w", op, zone, p.Server, p.timeout(), err)
		}
		if errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrTime) {
			return nil, fmt.Errorf("rfc2136: %s of zone %s: the answer of server %s is not signed with TSIG key %s: %w", op, zone, p.Server, p.KeyName, err)
		}
		return nil, fmt.Errorf("rfc2136: %s of zone %s at server %s: %w", op, zone, p.Server, err)
	}
	return r, nil
}

func (p *Provider) refusal(op, zone string, r *dns.Msg) *UpdateError {
	e := &UpdateError{Server: p.Server, Zone: zone, KeyName: p.KeyName, Op: op, Rcode: r.Rcode}
	if t := r.IsTsig(); t != nil {
		e.TSIGError = t.Error
	}
	return e
}

// update sends an UPDATE message and checks the server applied it.
func (p *Provider) update(ctx context.Context, zone string, m *dns.Msg) error {
	_, err := p.exchange(ctx, "update", zone, m)
	return err
}

// query asks the server (not recursively) for the records of name and
// type; NXDOMAIN and an empty answer are no records.
func (p *Provider) query(ctx context.Context, name string, t uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = false
	r, err := p.exchange(ctx, "query", name, m)
	if err != nil {
		var ue *UpdateError
		if errors.As(err, &ue) && ue.Rcode == dns.RcodeNameError {
			return nil, nil
		}
		return nil, err
	}
	var out []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == t {
			out = append(out, rr)
		}
	}
	return out, nil
}

// transfer reads the whole zone with AXFR over TCP.
func (p *Provider) transfer(ctx context.Context, zone string) ([]dns.RR, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Server)
	if err != nil {
		return nil, fmt.Errorf("rfc2136: zone transfer of %s: connecting to server %s: %w", zone, p.Server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	tr := &dns.Transfer{Conn: &dns.Conn{Conn: conn}}
	m := new(dns.Msg)
	m.SetAxfr(zone)
	if p.KeyName != "" {
		key := dns.Fqdn(p.KeyName)
		tr.TsigSecret = map[string]string{key: p.Secret}
		m.SetTsig(key, algorithms[p.algorithm()], 300, time.Now().Unix())
	}
	envs, err := tr.In(m, p.Server)
	if err != nil {
		return nil, fmt.Errorf("rfc2136: zone transfer of %s from server %s: %w", zone, p.Server, err)
	}
	var out []dns.RR
	var firstErr error
	for env := range envs {
		if env.Error != nil && firstErr == nil {
			firstErr = env.Error
		}
		out = append(out, env.RR...)
	}
	if firstErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rfc2136: zone transfer of %s: no complete answer from server %s within %s: %w", zone, p.Server, p.timeout(), ctx.Err())
		}
		return nil, fmt.Errorf("rfc2136: zone transfer of %s from server %s (TSIG key %q): %w", zone, p.Server, p.KeyName, firstErr)
	}
	// The transfer ends with the SOA it began with (RFC 5936 section 2.2).
	if n := len(out); n > 1 && out[n-1].Header().Rrtype == dns.TypeSOA {
		out = out[:n-1]
	}
	return out, nil
}

// findZone asks the server for the SOA of name: the answer (name is the
// apex) or the authority section (name is below it) names the zone.
func (p *Provider) findZone(ctx context.Context, name string) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeSOA)
	m.RecursionDesired = false
	r, err := p.exchange(ctx, "query", dns.Fqdn(name), m)
	var ue *UpdateError
	if err != nil && !(errors.As(err, &ue) && ue.Rcode == dns.RcodeNameError) {
		return "", fmt.Errorf("finding the zone of %s: %w", name, err)
	}
	if r != nil {
		for _, sec := range [][]dns.RR{r.Answer, r.Ns} {
			for _, rr := range sec {
				if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(soa.Hdr.Name, dns.Fqdn(name)) {
					return dns.CanonicalName(soa.Hdr.Name), nil
				}
			}
		}
	}
	return "", fmt.Errorf("rfc2136: finding the zone of %s: server %s answered no SOA for it; set the zone: %w", name, p.Server, errNoZone)
}
