package rfc2136

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// target says where one call's records go: caller is the zone the
// caller's record names are relative to ("" when they are absolute), and
// update the zone the server is asked to change (Provider.Zone when set).
type target struct {
	caller string
	update string
}

// target resolves the zones of a call; with neither Provider.Zone nor a
// zone from the caller, it asks the server for the SOA of the first
// record's name.
func (p *Provider) target(ctx context.Context, zone string, recs []libdns.Record) (target, error) {
	var t target
	if zone != "" {
		t.caller = dns.CanonicalName(zone)
	}
	switch {
	case p.Zone != "":
		t.update = dns.CanonicalName(p.Zone)
	case t.caller != "":
		t.update = t.caller
	case len(recs) > 0:
		z, err := p.findZone(ctx, t.fqdn(recs[0].RR().Name))
		if err != nil {
			return t, err
		}
		t.update = z
	default:
		return t, fmt.Errorf("rfc2136: no zone given and none configured: %w", errNoZone)
	}
	for _, rec := range recs {
		if name := t.fqdn(rec.RR().Name); !dns.IsSubDomain(t.update, name) {
			return t, fmt.Errorf("rfc2136: %s is not in zone %s", name, t.update)
		}
	}
	return t, nil
}

// fqdn is the absolute, lower-case name of a record name given by the
// caller.
func (t target) fqdn(name string) string {
	if t.caller == "" || name == "" {
		return dns.CanonicalName(name)
	}
	return dns.CanonicalName(libdns.AbsoluteName(name, t.caller))
}

// toRRs builds the wire records of recs; TXT data longer than 255 bytes is
// split into several strings (RFC 1035 section 3.3.14), other types are
// parsed from their zone-file form.
func (t target) toRRs(recs []libdns.Record) ([]dns.RR, error) {
	out := make([]dns.RR, 0, len(recs))
	for _, rec := range recs {
		r := rec.RR()
		name := t.fqdn(r.Name)
		ttl := uint32(r.TTL / time.Second)
		if strings.EqualFold(r.Type, "TXT") {
			out = append(out, &dns.TXT{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
				Txt: txtStrings(r.Data),
			})
			continue
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, ttl, strings.ToUpper(r.Type), r.Data))
		if err != nil || rr == nil {
			return nil, fmt.Errorf("rfc2136: record %s %s %q: %v", name, r.Type, r.Data, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

// fromRRs returns rrs as libdns records named relative to the caller's
// zone, of the type-specific structs where libdns has one.
func (t target) fromRRs(rrs []dns.RR) []libdns.Record {
	out := make([]libdns.Record, 0, len(rrs))
	for _, rr := range rrs {
		h := rr.Header()
		name := strings.TrimSuffix(h.Name, ".")
		if t.caller != "" {
			name = libdns.RelativeName(dns.CanonicalName(h.Name), t.caller)
		}
		r := libdns.RR{Name: name, TTL: time.Duration(h.Ttl) * time.Second, Type: dns.TypeToString[h.Rrtype], Data: rdataText(rr)}
		if parsed, err := r.Parse(); err == nil {
			out = append(out, parsed)
		} else {
			out = append(out, r)
		}
	}
	return out
}

// rdataText is the record's data as libdns wants it: for TXT the strings
// joined and unescaped, for other types the zone-file form.
func rdataText(rr dns.RR) string {
	if txt, ok := rr.(*dns.TXT); ok {
		var b strings.Builder
		for _, s := range txt.Txt {
			b.WriteString(unescapeTXT(s))
		}
		return b.String()
	}
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// txtStrings splits data into strings of at most 255 bytes, each escaped
// as miekg/dns expects TXT strings (presentation form).
func txtStrings(data string) []string {
	var out []string
	for len(data) > 255 {
		out = append(out, escapeTXT(data[:255]))
		data = data[255:]
	}
	return append(out, escapeTXT(data))
}

func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if i+3 < len(s) && isDigits(s[i+1:i+4]) {
			if n, _ := strconv.Atoi(s[i+1 : i+4]); n < 256 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		i++
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
