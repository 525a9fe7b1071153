package audit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/gateway-project/gateway/configs"
)

// https checks the HTTPS front from outside.
func (a *auditor) https(ctx context.Context) {
	h := a.o.Config.HTTP
	if h.Listen == "" {
		return
	}
	addr := a.listenerAddr("https", "", h.Listen)
	if addr == "" {
		a.r.add(Check{ID: "https.scan", Section: "listeners", Subject: "http.listen " + h.Listen, Title: "HTTPS listener scanned",
			Verdict: NotRun, Finding: "http.listen has port 0 and no running gateway said which port it got."})
		return
	}
	names := siteNames(h.Sites)
	sni := ""
	if len(names) > 0 {
		sni = names[0]
	}
	hs := tlsFirst(addr)
	ts := scanTLS(ctx, hs, sni, []string{"h2", "http/1.1"}, tls.VersionTLS13)
	scan := Scan{Kind: "https", Name: "https", Address: addr, Versions: ts.accepted, Refused: ts.refused, Suites: ts.suites,
		TLS13Suite: ts.tls13Suite, ALPN: ts.alpn, Certificates: []CertReport{}, HSTS: map[string]string{}}
	a.protocolChecks("https", "HTTPS listener "+addr, ts, "tls.min_version")

	a.r.add(Check{ID: "https.alpn", Section: "listeners", Subject: addr, Title: "Application protocol (ALPN)", Verdict: Info,
		Finding: fmt.Sprintf("offered h2 and http/1.1, the listener chose %q", ts.alpn)})

	for _, name := range names {
		cr, err := chainFor(ctx, hs, name, a.roots)
		if err != nil {
			a.r.add(Check{ID: "https.certificate", Section: "listeners", Subject: name, Title: "Certificate for " + name,
				Verdict: Fail, Finding: "no TLS handshake for " + name + ": " + err.Error(), Fix: "see the gateway's log for the certificate of " + name, Key: "tls"})
			continue
		}
		scan.Certificates = append(scan.Certificates, cr)
		a.certCheck("https.certificate", name+" on the HTTPS listener "+addr, name, cr)
	}

	for i, s := range h.Sites {
		name := probeName(s.Hosts[0])
		v, err := hstsOf(ctx, addr, name)
		key := fmt.Sprintf("http.sites[%d].hsts_max_age", i)
		c := Check{ID: "https.hsts", Section: "listeners", Subject: name, Title: "HSTS on " + name}
		switch {
		case err != nil:
			c.Verdict, c.Finding = Fail, "GET https://"+name+"/ failed: "+err.Error()
			c.Fix = "check that the site answers; see the access log"
		case v == "" && s.HSTSMaxAge <= 0:
			c.Verdict, c.Finding, c.Key = Fail, "no Strict-Transport-Security header: HSTS is disabled", key
			c.Fix = "set " + key + " (e.g. 8760h) so that browsers never try http:// again"
		case v == "":
			c.Verdict, c.Finding, c.Key = Fail, "no Strict-Transport-Security header", key
			c.Fix = "the application removed it or the request failed; check " + key
		default:
			c.Verdict, c.Finding = Pass, "Strict-Transport-Security: "+v
			scan.HSTS[name] = v
		}
		a.r.add(c)
	}

	c := Check{ID: "https.redirect", Section: "listeners", Subject: "http.redirect_listen", Title: "http:// is redirected to https://"}
	if h.RedirectListen == "" {
		c.Verdict, c.Key = Warn, "http.redirect_listen"
		c.Finding = "no redirect listener: http:// links and bookmarks fail instead of moving to https://"
		c.Fix = "set http.redirect_listen (e.g. \":80\")"
	} else if raddr := a.listenerAddr("http_redirect", "", h.RedirectListen); raddr == "" {
		c.Verdict, c.Finding = NotRun, "http.redirect_listen has port 0 and no running gateway said which port it got."
	} else {
		loc, code, err := redirectOf(ctx, raddr, probeName(sni))
		scan.Redirect = loc
		switch {
		case err != nil:
			c.Verdict, c.Finding = Fail, "GET http://"+raddr+"/ failed: "+err.Error()
		case (code == http.StatusPermanentRedirect || code == http.StatusMovedPermanently) && strings.HasPrefix(loc, "https://"):
			c.Verdict, c.Finding = Pass, fmt.Sprintf("http://%s/ answers %d to %s", raddr, code, loc)
		default:
			c.Verdict, c.Finding = Fail, fmt.Sprintf("http://%s/ answers %d, Location %q", raddr, code, loc)
		}
	}
	a.r.add(c)
	a.r.Listeners = append(a.r.Listeners, scan)
}

// protocolChecks turns a scan into the protocol and cipher verdicts.
func (a *auditor) protocolChecks(id, subject string, ts tlsScan, key string) {
	c := Check{ID: id + ".protocols", Section: "listeners", Subject: subject, Title: "TLS versions accepted"}
	old := slices.DeleteFunc(slices.Clone(ts.accepted), func(v string) bool { return v == "TLS 1.2" || v == "TLS 1.3" })
	switch {
	case len(ts.accepted) == 0:
		c.Verdict, c.Finding = Fail, "no TLS version was accepted: the listener did not complete a handshake"
		c.Fix = "check that the gateway runs and serves this listener"
	case len(old) > 0:
		c.Verdict, c.Finding, c.Key = Fail, "accepts "+strings.Join(ts.accepted, ", ")+": "+strings.Join(old, " and ")+" are broken", key
		c.Fix = "set " + key + " to \"1.2\" or \"1.3\""
	default:
		c.Verdict, c.Finding = Pass, "accepts "+strings.Join(ts.accepted, ", ")+"; refuses "+strings.Join(ts.refused, ", ")
	}
	a.r.add(c)
	if !slices.Contains(ts.accepted, "TLS 1.2") {
		return
	}
	c = Check{ID: id + ".ciphers", Section: "listeners", Subject: subject, Title: "TLS 1.2 cipher suites accepted"}
	if len(ts.weakSuites) > 0 {
		c.Verdict, c.Finding = Fail, "accepts suites without forward secrecy or an AEAD cipher: "+strings.Join(ts.weakSuites, ", ")
		c.Fix = "the gateway offers ECDHE with AES-GCM or ChaCha20-Poly1305 only; a listener that accepts these is not the gateway's"
	} else {
		c.Verdict, c.Finding = Pass, "each suite a client can offer was tried alone; accepted only "+strings.Join(ts.suites, ", ")+
			" (ECDHE with an AEAD cipher); TLS 1.3 chose "+orNone(ts.tls13Suite)
	}
	a.r.add(c)
}

// certCheck gives the verdict of a certificate served for name.
func (a *auditor) certCheck(id, subject, name string, cr CertReport) {
	c := Check{ID: id, Section: "listeners", Subject: subject, Title: "Certificate for " + name,
		Finding: fmt.Sprintf("%s, %s, issued by %s, expires %s (%.1f days)", cr.Subject, cr.Key, cr.Issuer, cr.NotAfter.Format("2006-01-02"), cr.DaysLeft)}
	var fixes []string
	if expiring(cr, 14, a.autoRenewed(name)) {
		c.Verdict, c.Key = Fail, "tls.certificates"
		c.Finding += "; expires in under 14 days"
		fixes = append(fixes, "renew it now: replace the operator file (tls.certificates) or see why the issuer did not renew (the gateway's log, /certs)")
	}
	if !cr.Verified {
		c.Verdict = Fail
		if c.Key == "" {
			c.Key = "tls.issuer"
		}
		c.Finding += "; does not verify for " + name + " against the roots this audit trusts: " + cr.VerifyErr
		fixes = append(fixes, "clients cannot verify it unless they trust its issuer: install the internal CA root (gateway ca root) in their trust stores, use tls.issuer acme, or give the audit the operator's root with --trust")
	}
	switch {
	case c.Verdict == Fail:
		c.Fix = strings.Join(fixes, "; ")
	case expiring(cr, 30, a.autoRenewed(name)):
		c.Verdict, c.Key = Warn, "tls.certificates"
		c.Fix = "renew it within " + itoa(int(cr.DaysLeft)-14) + " days"
	default:
		c.Verdict = Pass
		c.Finding += "; verifies for " + name
		if cr.DaysLeft < 30 {
			c.Finding += "; short-lived, renewed before the last third of its life"
		}
	}
	a.r.add(c)
}

// autoRenewed reports whether the gateway renews the certificate of name
// itself (internal CA or ACME), as the running gateway says, else as the
// configuration implies: with tls.issuer none every certificate is an
// operator file, which nobody renews but the operator.
func (a *auditor) autoRenewed(name string) bool {
	if a.snap != nil {
		for _, c := range a.snap.Certificates {
			for _, n := range c.Names {
				if strings.EqualFold(n, name) {
					return c.Issuer == "internal" || c.Issuer == "acme"
				}
			}
		}
	}
	return a.o.Config.TLS.Issuer != configs.IssuerNone && len(a.o.Config.TLS.Certificates) == 0
}

// siteNames are the names to ask certificates for: each site's hosts, a
// wildcard as one name under it.
func siteNames(sites []configs.Site) []string {
	var out []string
	for _, s := range sites {
		for _, h := range s.Hosts {
			out = append(out, probeName(h))
		}
	}
	return out
}

// probeName is a name a wildcard host covers.
func probeName(host string) string {
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		return "audit-probe." + rest
	}
	return host
}

// clientTo is an HTTP client that connects to addr whatever the URL says,
// so that a site can be asked for by its name on this host.
func clientTo(addr, sni string) *http.Client {
	d := net.Dialer{Timeout: dialTimeout}
	return &http.Client{
		Timeout: dialTimeout,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
			TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, // the chain is checked on its own
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func hstsOf(ctx context.Context, addr, name string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+name+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := clientTo(addr, name).Do(req)
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	return resp.Header.Get("Strict-Transport-Security"), nil
}

func redirectOf(ctx context.Context, addr, name string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+"/audit-probe", nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := clientTo(addr, name).Do(req)
	if err != nil {
		return "", 0, err
	}
	_ = resp.Body.Close()
	return resp.Header.Get("Location"), resp.StatusCode, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
