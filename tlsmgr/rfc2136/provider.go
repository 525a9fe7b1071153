package rfc2136

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// DefaultTimeout bounds each exchange with the server when
// Provider.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Provider writes records to one DNS server. Its zero value is not usable;
// fill in Server (and the TSIG fields) and call Check, or use New. A
// Provider is safe for concurrent use: every call makes its own exchange.
type Provider struct {
	// Server is the primary server's host:port.
	Server string
	// KeyName, Algorithm and Secret are the TSIG key; an empty KeyName
	// sends unsigned updates. Algorithm is a name such as "hmac-sha256"
	// ("" means hmac-sha256); Secret is base64, as in named.conf.
	KeyName   string
	Algorithm string
	Secret    string
	// Zone, when set, is the zone every update is made in, whatever zone
	// the caller names; records outside it are refused. When empty the
	// caller's zone is used, or, if that is empty too, the zone is found
	// with an SOA query to Server.
	Zone string
	// Timeout bounds each exchange (DefaultTimeout when zero); the
	// caller's context can end it sooner.
	Timeout time.Duration
}

var (
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
)

// algorithms maps the configuration's names to miekg/dns's.
var algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// Check reports what is wrong with the provider's settings, naming the
// field; it never includes the secret.
func (p *Provider) Check() error {
	if _, _, err := net.SplitHostPort(p.Server); err != nil {
		return fmt.Errorf("rfc2136: server %q is not host:port", p.Server)
	}
	if p.KeyName == "" {
		return nil
	}
	if _, ok := algorithms[p.algorithm()]; !ok {
		return fmt.Errorf("rfc2136: unknown TSIG algorithm %q", p.Algorithm)
	}
	if _, err := base64.StdEncoding.DecodeString(p.Secret); err != nil || p.Secret == "" {
		return fmt.Errorf("rfc2136: the TSIG secret of key %s is not base64", p.KeyName)
	}
	return nil
}

func (p *Provider) algorithm() string {
	if p.Algorithm == "" {
		return "hmac-sha256"
	}
	return strings.ToLower(p.Algorithm)
}

func (p *Provider) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultTimeout
}

// AppendRecords adds recs to the zone in one update and returns them.
// Adding a record that already exists (same name, type and data) is not an
// error: the server ignores it (RFC 2136 section 3.4.2.2).
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := p.target(ctx, zone, recs)
	if err != nil {
		return nil, err
	}
	rrs, err := z.toRRs(recs)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetUpdate(z.update)
	m.Insert(rrs)
	if err := p.update(ctx, z.update, m); err != nil {
		return nil, err
	}
	return z.fromRRs(rrs), nil
}

// SetRecords makes recs the only records of each (name, type) they name,
// in one update: the server deletes those RRsets and adds recs atomically,
// so on error the zone is as it was (unless the error is a timeout, after
// which the server may or may not have applied it).
func (p *Provider) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := p.target(ctx, zone, recs)
	if err != nil {
		return nil, err
	}
	rrs, err := z.toRRs(recs)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetUpdate(z.update)
	seen := map[[2]string]bool{}
	for _, rr := range rrs {
		k := [2]string{strings.ToLower(rr.Header().Name), dns.TypeToString[rr.Header().Rrtype]}
		if !seen[k] {
			seen[k] = true
			m.RemoveRRset([]dns.RR{rr})
		}
	}
	m.Insert(rrs)
	if err := p.update(ctx, z.update, m); err != nil {
		return nil, err
	}
	return z.fromRRs(rrs), nil
}

// DeleteRecords removes the records of the zone that match recs and
// returns them; a record given with an empty type, a zero TTL or empty data
// matches any. It reads what exists first (a query for the name, or the
// zone transfer when the type is empty), then removes exactly those
// records in one update; recs that match nothing are ignored.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	z, err := p.target(ctx, zone, recs)
	if err != nil {
		return nil, err
	}
	var doomed []dns.RR
	var zoneRRs []dns.RR // read once, when a record has no type
	for _, rec := range recs {
		want := rec.RR()
		name := z.fqdn(want.Name)
		if !dns.IsSubDomain(z.update, name) {
			return nil, fmt.Errorf("rfc2136: %s is not in zone %s", name, z.update)
		}
		var have []dns.RR
		if want.Type == "" {
			if zoneRRs == nil {
				if zoneRRs, err = p.transfer(ctx, z.update); err != nil {
					return nil, err
				}
			}
			have = zoneRRs
		} else {
			t, ok := dns.StringToType[strings.ToUpper(want.Type)]
			if !ok {
				return nil, fmt.Errorf("rfc2136: unknown record type %q", want.Type)
			}
			if have, err = p.query(ctx, name, t); err != nil {
				return nil, err
			}
		}
		for _, rr := range have {
			if matches(rr, name, want) && !containsRR(doomed, rr) {
				doomed = append(doomed, rr)
			}
		}
	}
	if len(doomed) == 0 {
		return nil, nil
	}
	out := z.fromRRs(doomed) // before Remove rewrites class and TTL
	m := new(dns.Msg)
	m.SetUpdate(z.update)
	m.Remove(doomed)
	if err := p.update(ctx, z.update, m); err != nil {
		return nil, err
	}
	return out, nil
}

// GetRecords returns every record of the zone except its SOA and the DNSSEC
// records, read with a zone transfer (AXFR) signed with the key.
func (p *Provider) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	z, err := p.target(ctx, zone, nil)
	if err != nil {
		return nil, err
	}
	rrs, err := p.transfer(ctx, z.update)
	if err != nil {
		return nil, err
	}
	var keep []dns.RR
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case dns.TypeSOA, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY, dns.TypeZONEMD:
			continue
		}
		keep = append(keep, rr)
	}
	return z.fromRRs(keep), nil
}

// matches reports whether rr is the record want describes at name; empty
// fields of want match anything.
func matches(rr dns.RR, name string, want libdns.RR) bool {
	h := rr.Header()
	if !strings.EqualFold(h.Name, name) {
		return false
	}
	if want.Type != "" && !strings.EqualFold(dns.TypeToString[h.Rrtype], want.Type) {
		return false
	}
	if want.TTL != 0 && time.Duration(h.Ttl)*time.Second != want.TTL.Truncate(time.Second) {
		return false
	}
	return want.Data == "" || rdataText(rr) == want.Data
}

func containsRR(list []dns.RR, rr dns.RR) bool {
	for _, r := range list {
		if dns.IsDuplicate(r, rr) {
			return true
		}
	}
	return false
}

// errNoZone is returned when no zone could be determined.
var errNoZone = errors.New("no zone")
