package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// traffic reports what the running gateway saw over --since.
func (a *auditor) traffic(_ context.Context) {
	if a.snap == nil || a.snap.Window == nil {
		reason := "no running gateway answered"
		if a.snap != nil {
			reason = "no --since span was asked for"
		}
		a.r.add(Check{ID: "traffic.window", Section: "traffic", Subject: "running gateway", Title: "What the gateway saw",
			Verdict: NotRun, Finding: reason + ": the logins and requests it served are not reported (not measured, not zero)."})
		return
	}
	w := a.snap.Window
	t := &Traffic{Requested: w.Requested.String(), From: w.From, To: w.To, Complete: w.Complete,
		Logins: []LoginCount{}, Refusals: []ReasonCount{}, HTTPSRequests: []ReasonCount{}}
	a.r.Traffic = t
	span := fmt.Sprintf("from %s to %s", w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339))
	if !w.Complete {
		span += fmt.Sprintf(" (the gateway has run %s of the %s asked for: the figures cover that span only)", roundSpan(w.To.Sub(w.From)), a.o.Since)
	}
	var plain []string
	var ok float64
	for _, e := range w.Counts["sql_logins"] {
		lc := LoginCount{Listener: e.Labels["listener"], ClientTLS: e.Labels["client_tls"], UpstreamTLS: e.Labels["upstream_tls"], Outcome: e.Labels["outcome"], N: e.N}
		t.Logins = append(t.Logins, lc)
		if lc.Outcome == "ok" {
			ok += e.N
			if lc.ClientTLS == "none" || lc.UpstreamTLS == "none" {
				plain = append(plain, fmt.Sprintf("%g on %s (client leg %s, upstream leg %s)", e.N, lc.Listener, lc.ClientTLS, lc.UpstreamTLS))
			}
		}
	}
	c := Check{ID: "traffic.sql_logins", Section: "traffic", Subject: "SQL logins " + span, Title: "Every SQL login crossed both legs encrypted"}
	if len(plain) > 0 {
		c.Verdict, c.Finding = Warn, fmt.Sprintf("%g logins; with a leg in clear: %s", ok, strings.Join(plain, "; "))
		c.Fix = "a leg in clear happens only with client_encryption: allow_plaintext_loopback or upstream encryption: disabled_loopback, on this host's loopback; remove them unless that is the intent"
		c.Key = "sql[].client_encryption"
	} else if ok == 0 {
		c.Verdict, c.Finding = Pass, "no successful SQL login in this span (measured: zero)"
	} else {
		c.Verdict, c.Finding = Pass, fmt.Sprintf("%g successful logins, every one with TLS on the client leg and on the upstream leg", ok)
	}
	a.r.add(c)

	for _, e := range w.Counts["sql_refusals"] {
		t.Refusals = append(t.Refusals, ReasonCount{Subject: e.Labels["listener"], Reason: "error " + e.Labels["error_number"], N: e.N})
	}
	for _, e := range w.Counts["sql_connections"] {
		switch o := e.Labels["outcome"]; o {
		case "refused_encryption", "handshake_failed", "malformed", "not_tds", "timeout", "over_limit":
			t.Refusals = append(t.Refusals, ReasonCount{Subject: e.Labels["listener"], Reason: o, N: e.N})
		}
	}
	sort.Slice(t.Refusals, func(i, j int) bool { return t.Refusals[i].N > t.Refusals[j].N })
	var parts []string
	for _, r := range t.Refusals {
		parts = append(parts, fmt.Sprintf("%g %s on %s", r.N, r.Reason, r.Subject))
	}
	finding := "none"
	if len(parts) > 0 {
		finding = strings.Join(parts, "; ") + " (earlier audits count here too: each TLS version and cipher suite a listener refuses is a failed handshake)"
	}
	a.r.add(Check{ID: "traffic.sql_refusals", Section: "traffic", Subject: "SQL connections " + span, Title: "Attempts refused, by reason", Verdict: Info, Finding: finding})

	var old, total float64
	for _, e := range w.Counts["http_requests_tls"] {
		v := e.Labels["tls_version"]
		t.HTTPSRequests = append(t.HTTPSRequests, ReasonCount{Subject: "https", Reason: "TLS " + v, N: e.N})
		total += e.N
		if v != "1.2" && v != "1.3" {
			old += e.N
		}
	}
	c = Check{ID: "traffic.https_tls", Section: "traffic", Subject: "HTTPS requests " + span, Title: "HTTPS requests by TLS version"}
	if old > 0 {
		c.Verdict, c.Finding, c.Key = Fail, fmt.Sprintf("%g of %g requests used a TLS version below 1.2", old, total), "tls.min_version"
		c.Fix = "set tls.min_version to \"1.2\" or higher"
	} else {
		var by []string
		for _, r := range t.HTTPSRequests {
			by = append(by, fmt.Sprintf("%g over %s", r.N, r.Reason))
		}
		c.Verdict, c.Finding = Pass, fmt.Sprintf("%g requests, all over TLS 1.2 or 1.3 (%s)", total, strings.Join(by, ", "))
	}
	a.r.add(c)
}

func roundSpan(d time.Duration) string { return d.Round(time.Second).String() }
