package test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIISFarmStickyAndHealth runs a two-server farm with sticky sessions
// and active health checks, kills the server a user is stuck to in the
// middle, and brings it back.
func TestIISFarmStickyAndHealth(t *testing.T) {
	t.Parallel()
	iis1 := newIISDouble(t, "iis01", "NTLM", nil)
	iis2 := newIISDouble(t, "iis02", "NTLM", nil)
	byName := map[string]*iisDouble{"iis01": iis1, "iis02": iis2}
	g, roots := iisGateway(t, gwSite{
		Hosts:       []string{"farm.test"},
		Upstreams:   []string{iis1.url, iis2.url},
		Sticky:      &gwSticky{Cookie: "GW_AFFINITY"},
		HealthCheck: &gwHealthCheck{Path: "/health", Interval: "100ms", Timeout: "1s"},
	})
	client := httpsClient(roots, "farm.test", g.httpsAddr)
	url := httpsURL("farm.test", g.httpsAddr, "/Default.aspx")

	// get sends the request with the affinity cookie (if any) and returns
	// the server that answered and the new affinity, if one was set.
	get := func(affinity string) (server, newAffinity string) {
		t.Helper()
		hdr := []string{}
		if affinity != "" {
			hdr = []string{"Cookie", "ASP.NET_SessionId=s1; GW_AFFINITY=" + affinity}
		}
		resp, e := getIIS(t, client, url, hdr...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if strings.Contains(e.Cookie, "GW_AFFINITY") {
			t.Errorf("the application saw the gateway's cookie: %q", e.Cookie)
		}
		for _, c := range resp.Header.Values("Set-Cookie") {
			if v, ok := strings.CutPrefix(c, "GW_AFFINITY="); ok {
				newAffinity, _, _ = strings.Cut(v, ";")
			}
		}
		return e.Server, newAffinity
	}

	stuck, affinity := get("")
	if affinity == "" {
		t.Fatal("no affinity cookie set")
	}
	for _, d := range byName {
		if strings.Contains(affinity, strings.TrimPrefix(d.url, "http://")) {
			t.Fatalf("affinity %q reveals an upstream address", affinity)
		}
	}
	for i := range 6 {
		if s, _ := get(affinity); s != stuck {
			t.Fatalf("request %d with affinity went to %s, want %s", i, s, stuck)
		}
	}
	// Without the cookie, requests are spread over both.
	seen := map[string]bool{}
	for range 4 {
		s, _ := get("")
		seen[s] = true
	}
	if len(seen) != 2 {
		t.Errorf("without affinity requests went to %v, want both servers", seen)
	}

	// The server the user is stuck to dies. The very next request, before
	// any health check noticed, must still succeed: the connection is
	// refused, so nothing was sent and the gateway tries the other server.
	dead := byName[stuck]
	dead.kill()
	mark := g.mark()
	s, moved := get(affinity)
	if s == stuck || moved == "" || moved == affinity {
		t.Fatalf("after %s died: answered by %s with affinity %q, want the other server and a new affinity", stuck, s, moved)
	}
	g.waitLogAfter(t, mark, 10*time.Second, "upstream unhealthy for "+dead.url, func(_ string, e logEntry) bool {
		return e.str("msg") == "upstream unhealthy" && e.str("upstream") == dead.url
	})
	for i := range 4 {
		if s, _ := get(""); s == stuck {
			t.Fatalf("request %d went to %s while it is down", i, s)
		}
		if s, _ := get(affinity); s == stuck {
			t.Fatalf("request %d with the old affinity went to %s while it is down", i, s)
		}
	}

	// It comes back: the health check sees it, and the old affinity works
	// again.
	mark = g.mark()
	dead.restart(t)
	g.waitLogAfter(t, mark, 10*time.Second, "upstream healthy for "+dead.url, func(_ string, e logEntry) bool {
		return e.str("msg") == "upstream healthy" && e.str("upstream") == dead.url && e.str("check") == "active"
	})
	if s, _ := get(affinity); s != stuck {
		t.Errorf("after %s came back the old affinity went to %s", stuck, s)
	}
}
