package rfc2136

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/gateway-project/gateway/tlsmgr/rfc2136/bindtest"
)

func provider(s *bindtest.Server) *Provider {
	return &Provider{Server: s.Addr, KeyName: s.KeyName, Algorithm: s.Algorithm, Secret: s.Secret, Timeout: 5 * time.Second}
}

// txtAt asks the server itself (unsigned, as any resolver would) for the
// TXT strings at name.
func txtAt(t *testing.T, s *bindtest.Server, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, err := dns.Exchange(m, s.Addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

func txtNames(recs []libdns.Record) []string {
	var out []string
	for _, r := range recs {
		rr := r.RR()
		if rr.Type == "TXT" {
			out = append(out, rr.Name+"="+rr.Data)
		}
	}
	slices.Sort(out)
	return out
}

// TestProviderAgainstBIND appends, sets, lists and deletes TXT records in
// a real BIND 9 zone, and reads each result back from BIND.
func TestProviderAgainstBIND(t *testing.T) {
	t.Parallel()
	s := bindtest.Start(t, "internal.test", "app A 127.0.0.1")
	p := provider(s)
	ctx := context.Background()
	const zone = "internal.test."
	name := "_acme-challenge.app.internal.test"

	got, err := p.AppendRecords(ctx, zone, []libdns.Record{
		libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: "token-one"},
		libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: "token-two"},
	})
	if err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	if _, ok := got[0].(libdns.TXT); !ok || len(got) != 2 || got[0].RR().Name != "_acme-challenge.app" {
		t.Errorf("AppendRecords returned %#v", got)
	}
	if v := txtAt(t, s, name); !slices.Equal(v, []string{"token-one", "token-two"}) {
		t.Fatalf("after append BIND answers %v", v)
	}

	// A value longer than one TXT string, with characters that need escaping.
	long := strings.Repeat("x", 300) + ` "quoted" \ back`
	if _, err := p.SetRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: long}}); err != nil {
		t.Fatalf("SetRecords: %v", err)
	}
	if v := txtAt(t, s, name); len(v) != 1 {
		t.Fatalf("after set BIND answers %d records, want the one set", len(v))
	}

	list, err := p.GetRecords(ctx, zone)
	if err != nil {
		t.Fatalf("GetRecords: %v", err)
	}
	if v := txtNames(list); !slices.Equal(v, []string{"_acme-challenge.app=" + long}) {
		t.Errorf("GetRecords TXT = %q", v)
	}
	var sawA bool
	for _, r := range list {
		if a, ok := r.(libdns.Address); ok && a.Name == "app" && a.IP.String() == "127.0.0.1" {
			sawA = true
		}
		if r.RR().Type == "SOA" {
			t.Errorf("GetRecords returned the SOA")
		}
	}
	if !sawA {
		t.Errorf("GetRecords lacks app A 127.0.0.1: %v", list)
	}

	// Deleting what does not exist deletes nothing.
	gone, err := p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", Text: "token-one"}})
	if err != nil || len(gone) != 0 {
		t.Fatalf("DeleteRecords of an absent value = %v, %v", gone, err)
	}
	gone, err = p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: long}})
	if err != nil || len(gone) != 1 {
		t.Fatalf("DeleteRecords = %v, %v", gone, err)
	}
	if v := txtAt(t, s, name); len(v) != 0 {
		t.Errorf("after delete BIND still answers %q", v)
	}

	// An empty type deletes every record of the name the key may touch.
	if _, err := p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "x", Text: "a"}, libdns.TXT{Name: "x", Text: "b"}}); err != nil {
		t.Fatal(err)
	}
	gone, err = p.DeleteRecords(ctx, zone, []libdns.Record{libdns.RR{Name: "x"}})
	if err != nil || len(gone) != 2 {
		t.Fatalf("DeleteRecords by name = %v, %v", gone, err)
	}

	// dig, an independent client, agrees that nothing is left.
	if dig, err := exec.LookPath("dig"); err == nil {
		host, port, _ := net.SplitHostPort(s.Addr)
		out, err := exec.Command(dig, "@"+host, "-p", port, name, "TXT", "+short").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("dig %s TXT: %q %v", name, out, err)
		}
	}
}

// TestProviderZones: the zone comes from the caller, from Provider.Zone
// (which wins), or from an SOA query; a record outside it is refused.
func TestProviderZones(t *testing.T) {
	t.Parallel()
	s := bindtest.Start(t, "internal.test")
	ctx := context.Background()

	p := provider(s)
	got, err := p.AppendRecords(ctx, "", []libdns.Record{libdns.TXT{Name: "_acme-challenge.deep.sub.internal.test.", Text: "found-by-soa"}})
	if err != nil {
		t.Fatalf("AppendRecords without a zone: %v", err)
	}
	if got[0].RR().Name != "_acme-challenge.deep.sub.internal.test" {
		t.Errorf("returned name %q, want it absolute", got[0].RR().Name)
	}
	if v := txtAt(t, s, "_acme-challenge.deep.sub.internal.test"); !slices.Equal(v, []string{"found-by-soa"}) {
		t.Errorf("BIND answers %v", v)
	}

	// The caller names a zone the server does not have (certmagic found a
	// delegation that is not visible to it, say); Provider.Zone wins.
	p.Zone = "internal.test"
	got, err = p.AppendRecords(ctx, "sub.internal.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "configured-zone"}})
	if err != nil {
		t.Fatalf("AppendRecords with Provider.Zone: %v", err)
	}
	if got[0].RR().Name != "_acme-challenge" {
		t.Errorf("returned name %q, want it relative to the caller's zone", got[0].RR().Name)
	}
	if v := txtAt(t, s, "_acme-challenge.sub.internal.test"); !slices.Equal(v, []string{"configured-zone"}) {
		t.Errorf("BIND answers %v", v)
	}
	if _, err := p.AppendRecords(ctx, "example.org.", []libdns.Record{libdns.TXT{Name: "x", Text: "y"}}); err == nil || !strings.Contains(err.Error(), "not in zone internal.test.") {
		t.Errorf("record outside the zone: %v", err)
	}
}

// TestProviderRefusals: a wrong secret, an unknown key and a record the
// update-policy does not grant are refused with an *UpdateError naming
// the server, the key and the response code; nothing is written.
func TestProviderRefusals(t *testing.T) {
	t.Parallel()
	s := bindtest.Start(t, "internal.test")
	ctx := context.Background()
	wrong := provider(s)
	wrong.Secret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="
	unknown := provider(s)
	unknown.KeyName = "other-key"
	tests := []struct {
		name  string
		p     *Provider
		rec   libdns.Record
		rcode int
		tsig  uint16
		want  string
	}{
		{"wrong secret", wrong, libdns.TXT{Name: "_acme-challenge.app", Text: "t"}, dns.RcodeNotAuth, dns.RcodeBadSig, "NOTAUTH"},
		{"unknown key", unknown, libdns.TXT{Name: "_acme-challenge.app", Text: "t"}, dns.RcodeNotAuth, dns.RcodeBadKey, "NOTAUTH"},
		{"type not granted", provider(s), libdns.Address{Name: "app", IP: netipAddr(t, "10.0.0.5")}, dns.RcodeRefused, 0, "REFUSED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.AppendRecords(ctx, "internal.test.", []libdns.Record{tc.rec})
			var ue *UpdateError
			if !errors.As(err, &ue) {
				t.Fatalf("AppendRecords = %v, want an *UpdateError", err)
			}
			if ue.Rcode != tc.rcode || ue.TSIGError != tc.tsig {
				t.Errorf("rcode %d tsig %d, want %d %d", ue.Rcode, ue.TSIGError, tc.rcode, tc.tsig)
			}
			msg := err.Error()
			for _, part := range []string{s.Addr, tc.p.KeyName, tc.want} {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q does not name %q", msg, part)
				}
			}
			if strings.Contains(msg, tc.p.Secret) {
				t.Errorf("error %q contains the secret", msg)
			}
		})
	}
	if v := txtAt(t, s, "_acme-challenge.app.internal.test"); len(v) != 0 {
		t.Errorf("a refused update left %v", v)
	}
}

// TestProviderTimeout: a server that never answers (a UDP socket nobody
// reads) fails the call within the timeout, naming the server.
func TestProviderTimeout(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p := &Provider{Server: pc.LocalAddr().String(), KeyName: "gw-key", Secret: "c2VjcmV0", Timeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = p.AppendRecords(context.Background(), "internal.test.", []libdns.Record{libdns.TXT{Name: "x", Text: "y"}})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer from server "+p.Server) {
		t.Fatalf("AppendRecords = %v, want a timeout naming the server", err)
	}
	if took > 3*time.Second {
		t.Errorf("took %s with a 300ms timeout", took)
	}
	// The caller's context ends the wait sooner.
	p.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := p.DeleteRecords(ctx, "internal.test.", []libdns.Record{libdns.TXT{Name: "x", Text: "y"}}); err == nil {
		t.Fatal("DeleteRecords succeeded against a silent server")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the context's 200ms deadline took %s", took)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		p    Provider
		want string
	}{
		{Provider{Server: "ns1"}, "host:port"},
		{Provider{Server: "ns1:53", KeyName: "k", Algorithm: "hmac-md5", Secret: "c2VjcmV0"}, "algorithm"},
		{Provider{Server: "ns1:53", KeyName: "k", Secret: "not base64!"}, "not base64"},
		{Provider{Server: "ns1:53"}, ""},
	} {
		err := tc.p.Check()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v, want %q", tc.p, err, tc.want)
		}
	}
}

func TestTXTEscaping(t *testing.T) {
	for _, s := range []string{"plain", `q"uote`, `back\slash`, "tab\tnew\nline\x7f\xff", `\+12`} {
		var got strings.Builder
		for _, part := range txtStrings(s) {
			got.WriteString(unescapeTXT(part))
		}
		if got.String() != s {
			t.Errorf("round trip of %q = %q", s, got.String())
		}
	}
}

func netipAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
