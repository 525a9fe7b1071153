package r53test

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// ServeDNS answers DNS queries over UDP on a free 127.0.0.1 port from the
// double's hosted zones, as Route 53's authoritative servers would once a
// change is INSYNC, and returns the address. It stops when the test ends.
func (s *Server) ServeDNS(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.answer)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func (s *Server) answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	var z *zone
	for _, c := range s.zones {
		if (name == c.name || strings.HasSuffix(name, "."+c.name)) && (z == nil || len(c.name) > len(z.name)) {
			z = c
		}
	}
	if z == nil {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	m.Authoritative = true
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns-1.r53test." + z.name, Mbox: "hostmaster." + z.name, Serial: 1, Refresh: 7200, Retry: 900, Expire: 1209600, Minttl: 60}
	if q.Qtype == dns.TypeSOA && name == z.name {
		m.Answer = append(m.Answer, soa)
		_ = w.WriteMsg(m)
		return
	}
	exists := false
	for k, set := range z.sets {
		if k.name != name {
			continue
		}
		exists = true
		if k.typ != dns.TypeToString[q.Qtype] {
			continue
		}
		for _, v := range set.values {
			hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: uint32(set.ttl)}
			if q.Qtype == dns.TypeTXT {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: txtStrings(v)})
			} else if rr, err := dns.NewRR(q.Name + " " + k.typ + " " + v); err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa)
		if !exists && name != z.name {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

// txtStrings splits a Route 53 TXT value ("a" "b") into its strings,
// still escaped, as miekg/dns holds them.
func txtStrings(v string) []string {
	var out []string
	var b strings.Builder
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' && in:
			out = append(out, b.String())
			b.Reset()
			in = false
		case c == '"':
			in = true
		case c == '\\' && i+1 < len(v) && in:
			b.WriteByte(c)
			i++
			b.WriteByte(v[i])
		case in:
			b.WriteByte(c)
		}
	}
	return out
}
