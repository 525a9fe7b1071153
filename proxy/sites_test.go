package proxy

import (
	"testing"
	"time"

	"github.com/gateway-project/gateway/configs"
)

func TestSiteTableMatch(t *testing.T) {
	cfgs := []configs.Site{
		{Hosts: []string{"app.example.com"}},
		{Hosts: []string{"*.Example.com"}},
		{Hosts: []string{"b.test", "C.Test."}},
		{Hosts: []string{"::1", "10.0.0.1"}},
		{Hosts: []string{"*.deep.example.com"}},
	}
	var sites []*site
	for i, c := range cfgs {
		c.Upstreams = []string{"http://127.0.0.1:1"}
		s, err := newSite(i, c)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, s)
	}
	table := newSiteTable(sites)

	tests := []struct {
		name string
		host string
		want int // index into sites
	}{
		{"exact", "app.example.com", 0},
		{"exact with port", "app.example.com:8443", 0},
		{"case-insensitive", "APP.Example.COM", 0},
		{"trailing dot", "app.example.com.", 0},
		{"wildcard one label", "x.example.com", 1},
		{"wildcard with port and case", "X.EXAMPLE.COM:443", 1},
		{"wildcard matches one label only", "a.b.example.com", 0},
		{"deeper wildcard", "a.deep.example.com", 4},
		{"wildcard does not match its parent", "example.com", 0},
		{"second host of a site", "c.test", 2},
		{"second host of a site with port", "b.test:80", 2},
		{"ipv4", "10.0.0.1:443", 3},
		{"ipv6 bracketed with port", "[::1]:443", 3},
		{"ipv6 bracketed", "[::1]", 3},
		{"ipv6 non-canonical", "[0:0::01]", 3},
		{"unknown name gets default", "other.test", 0},
		{"missing host gets default", "", 0},
		{"unclosed bracket gets default", "[::1", 0},
		{"empty first label", ".example.com", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := table.match(tc.host); got != sites[tc.want] {
				t.Errorf("match(%q) = site %q, want %q", tc.host, got.name, sites[tc.want].name)
			}
		})
	}
}

func TestNewSiteRejects(t *testing.T) {
	tests := []struct {
		name string
		site configs.Site
	}{
		{"no hosts", configs.Site{Upstreams: []string{"http://a"}}},
		{"no upstreams", configs.Site{Hosts: []string{"a"}}},
		{"unparsable upstream", configs.Site{Hosts: []string{"a"}, Upstreams: []string{"http://[::1"}}},
		{"no scheme", configs.Site{Hosts: []string{"a"}, Upstreams: []string{"10.0.0.5:80"}}},
		{"ftp", configs.Site{Hosts: []string{"a"}, Upstreams: []string{"ftp://10.0.0.5"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newSite(0, tc.site); err == nil {
				t.Error("newSite succeeded, want an error")
			}
		})
	}
}

func TestPickSkipsUpstreamsInBackoff(t *testing.T) {
	s, err := newSite(0, configs.Site{Hosts: []string{"a"}, Upstreams: []string{"http://a", "http://b", "http://c"}})
	if err != nil {
		t.Fatal(err)
	}
	names := func(n int) string {
		var out string
		for range n {
			out += s.pick().url.Host
		}
		return out
	}
	if got := names(6); got != "abcabc" {
		t.Errorf("all up: picked %q, want abcabc", got)
	}
	s.upstreams[1].downUntil.Store(time.Now().Add(time.Hour).UnixNano())
	if got := names(3); got != "aca" {
		t.Errorf("b down: picked %q, want aca", got)
	}
	for _, u := range s.upstreams {
		u.downUntil.Store(time.Now().Add(time.Hour).UnixNano())
	}
	if got := names(3); got != "bca" { // the cursor stood at b
		t.Errorf("all down: picked %q, want them in turn (bca)", got)
	}
}
