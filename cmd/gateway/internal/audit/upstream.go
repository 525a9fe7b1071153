package audit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
	"github.com/gateway-project/gateway/tlsmgr"
)

// upstreams checks every leg behind the gateway: reachable, how it is
// verified, the certificate and TLS version it gives the gateway's own
// verification, whether SQL Server forces encryption itself, and which
// legs are plain http://.
func (a *auditor) upstreams(ctx context.Context) {
	for i, l := range a.o.Config.SQL {
		a.sqlUpstream(ctx, i, l)
	}
	for i, s := range a.o.Config.HTTP.Sites {
		for _, raw := range s.Upstreams {
			a.httpUpstream(ctx, i, s, raw)
		}
	}
}

func (a *auditor) sqlUpstream(ctx context.Context, i int, l configs.SQLListener) {
	u := l.Upstream
	key := fmt.Sprintf("sql[%d].upstream", i)
	id := "upstream.sql." + l.Name
	leg := Leg{Kind: "sql", Owner: l.Name, Address: u.Address, Verify: verifyName(u.TLS(), u.Encryption == configs.UpstreamEncryptionDisabledLoopback)}
	defer func() { a.r.Upstreams = append(a.r.Upstreams, leg) }()

	c := Check{ID: id + ".verification", Section: "upstreams", Subject: u.Address, Title: "How SQL Server's certificate is verified"}
	switch leg.Verify {
	case "insecure":
		c.Verdict, c.Key = Fail, key+".insecure_skip_verify"
		c.Finding = "insecure_skip_verify: any server, a man in the middle included, is trusted"
		c.Fix = "remove " + key + ".insecure_skip_verify and set " + key + ".ca_file (or issue SQL Server a certificate with `gateway ca issue`) or " + key + ".pin_sha256"
	case "none":
		c.Verdict, c.Key = Warn, key+".encryption"
		c.Finding = "disabled_loopback: the leg to SQL Server is plain text, on this host's loopback only"
		c.Fix = "acceptable only while SQL Server runs on this host"
	default:
		c.Verdict, c.Finding = Pass, "verified ("+leg.Verify+")"
	}
	a.r.add(c)

	addr, err := sqlDialAddr(ctx, u.Address)
	if err == nil {
		var conn net.Conn
		if conn, err = dial(ctx, addr); err == nil {
			_ = conn.Close()
		}
	}
	c = Check{ID: id + ".reachable", Section: "upstreams", Subject: u.Address, Title: "SQL Server reachable"}
	if err != nil {
		leg.Error = err.Error()
		c.Verdict, c.Finding, c.Key = Fail, "cannot connect: "+err.Error(), key+".address"
		c.Fix = "check " + key + ".address and that SQL Server listens there"
		a.r.add(c)
		return
	}
	leg.Reachable = true
	c.Verdict, c.Finding = Pass, "connected to "+addr
	a.r.add(c)
	if leg.Verify == "none" {
		return
	}

	// The gateway's own verification, as tlsmgr builds it.
	cfg, err := tlsmgr.ClientTLSConfig(u.TLS(), nil)
	c = Check{ID: id + ".certificate", Section: "upstreams", Subject: u.Address, Title: "SQL Server's certificate, verified as the gateway does"}
	var tc *tls.Conn
	if err == nil {
		if u.Encryption == configs.UpstreamEncryptionStrict {
			tc, err = tlsFirstALPN(addr, "tds/8.0")(ctx, cfg)
		} else {
			tc, err = inPrelogin(addr)(ctx, tdstls.Limit(cfg))
		}
	}
	if err != nil {
		leg.Error = err.Error()
		c.Verdict, c.Finding, c.Key = Fail, "the TLS handshake failed: "+err.Error(), key+".ca_file"
		c.Fix = "the gateway cannot connect either: check " + key + ".ca_file, server_name and pin_sha256 against SQL Server's certificate"
		a.r.add(c)
	} else {
		cs := tc.ConnectionState()
		_ = tc.Close()
		cr := certReport(u.TLS().ServerName, cs.PeerCertificates, nil)
		cr.Verified, cr.VerifyErr = true, "" // by the gateway's own configuration above
		leg.Cert, leg.TLS = &cr, tls.VersionName(cs.Version)
		c.Verdict = Pass
		c.Finding = fmt.Sprintf("%s, %s, issued by %s, expires %s (%.1f days); %s", cr.Subject, cr.Key, cr.Issuer, cr.NotAfter.Format("2006-01-02"), cr.DaysLeft, leg.TLS)
		if expiring(cr, 14, false) {
			c.Verdict, c.Key = Fail, key
			c.Fix = "renew SQL Server's certificate (gateway ca issue can issue one from the internal CA)"
		} else if expiring(cr, 30, false) {
			c.Verdict, c.Key = Warn, key
			c.Fix = "renew SQL Server's certificate within " + itoa(int(cr.DaysLeft)-14) + " days"
		}
		a.r.add(c)
	}

	if u.Encryption == configs.UpstreamEncryptionStrict {
		return // TDS 8 servers encrypt everything by construction
	}
	ans := answerTo(ctx, addr, tds.EncryptOff)
	forced := ans == "REQ"
	leg.ForcesEncryption = &forced
	c = Check{ID: id + ".forces_encryption", Section: "upstreams", Subject: u.Address, Title: "SQL Server forces encryption for clients that connect around the gateway"}
	if forced {
		c.Verdict, c.Finding = Pass, "answered REQ to a client asking for login-only encryption (Force Encryption = Yes)"
	} else {
		c.Verdict = Fail
		c.Finding = "answered " + ans + " to a client asking for login-only encryption: an application that connects to " + u.Address + " directly, around the gateway, can run in clear text after its login"
		c.Fix = "set Force Encryption = Yes on SQL Server (SQL Server Configuration Manager, Protocols for the instance), and let only the gateway's address reach port " + strconv.Quote(u.Address)
	}
	a.r.add(c)
}

// sqlDialAddr is where an upstream address connects: host:port, or the
// port a named instance's SQL Browser gives.
func sqlDialAddr(ctx context.Context, address string) (string, error) {
	ua, err := configs.ParseUpstreamAddress(address)
	if err != nil {
		return "", err
	}
	if ua.Instance == "" {
		return address, nil
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	port, err := browser.LookupPort(ctx, ua.Host, ua.Instance)
	if err != nil {
		return "", fmt.Errorf("asking the SQL Browser of %s for %s: %w", ua.Host, ua.Instance, err)
	}
	return net.JoinHostPort(ua.Host, strconv.Itoa(port)), nil
}

func (a *auditor) httpUpstream(ctx context.Context, i int, s configs.Site, raw string) {
	key := fmt.Sprintf("http.sites[%d]", i)
	leg := Leg{Kind: "http", Owner: s.Hosts[0], Address: raw, Verify: "none"}
	defer func() { a.r.Upstreams = append(a.r.Upstreams, leg) }()
	u, err := url.Parse(raw)
	if err != nil {
		leg.Error = err.Error()
		return
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	conn, err := dial(ctx, host)
	c := Check{ID: "upstream.http." + raw, Section: "upstreams", Subject: raw, Title: "IIS upstream of " + s.Hosts[0]}
	if err != nil {
		leg.Error = err.Error()
		c.Verdict, c.Finding, c.Key = Fail, "cannot connect: "+err.Error(), key+".upstreams"
		c.Fix = "check " + key + ".upstreams and that IIS listens there"
		a.r.add(c)
		return
	}
	_ = conn.Close()
	leg.Reachable = true
	if u.Scheme == "http" {
		c.Verdict, c.Key = Warn, key+".upstreams"
		c.Finding = "plain http:// to " + host + ": this leg is not encrypted, and is acceptable only inside a trusted host or network segment"
		c.Fix = "give IIS an HTTPS binding (gateway ca issue can issue its certificate) and use https:// with " + key + ".upstream_tls"
		a.r.add(c)
		return
	}
	t := s.UpstreamTLS.TLS(u.Hostname())
	leg.Verify = verifyName(t, false)
	cfg, err := tlsmgr.ClientTLSConfig(t, nil)
	var tc *tls.Conn
	if err == nil {
		tc, err = tlsFirst(host)(ctx, cfg)
	}
	if err != nil {
		leg.Error = err.Error()
		c.Verdict, c.Finding, c.Key = Fail, "the TLS handshake failed: "+err.Error(), key+".upstream_tls"
		c.Fix = "check " + key + ".upstream_tls (ca_file, server_name, pin_sha256) against IIS's certificate"
		a.r.add(c)
		return
	}
	cs := tc.ConnectionState()
	_ = tc.Close()
	cr := certReport(t.ServerName, cs.PeerCertificates, nil)
	cr.Verified, cr.VerifyErr = true, ""
	leg.Cert, leg.TLS = &cr, tls.VersionName(cs.Version)
	c.Verdict, c.Finding = Pass, fmt.Sprintf("https, verified (%s); %s, expires %s (%.1f days); %s", leg.Verify, cr.Subject, cr.NotAfter.Format("2006-01-02"), cr.DaysLeft, leg.TLS)
	if leg.Verify == "insecure" {
		c.Verdict, c.Key = Fail, key+".upstream_tls.insecure_skip_verify"
		c.Finding = "https, but insecure_skip_verify: any server is trusted"
		c.Fix = "remove insecure_skip_verify and set " + key + ".upstream_tls.ca_file or pin_sha256"
	}
	a.r.add(c)
}

// verifyName names how a leg is verified.
func verifyName(t configs.UpstreamTLS, plain bool) string {
	switch {
	case plain:
		return "none"
	case t.InsecureSkipVerify:
		return "insecure"
	case t.PinSHA256 != "" && t.CAFile != "":
		return "ca+pin"
	case t.PinSHA256 != "":
		return "pin"
	case t.CAFile != "":
		return "ca"
	}
	return "system"
}
