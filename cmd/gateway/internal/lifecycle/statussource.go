package lifecycle

import (
	"strings"
	"time"

	"github.com/gateway-project/gateway/cmd/gateway/internal/status"
	"github.com/gateway-project/gateway/tlsmgr"
)

// statusSource is the running gateway as the status page and /status.json
// see it. It reads the published parts only (like readiness), never
// reloadMu, so that a reload waiting on an ACME server never blocks it.
type statusSource struct{ g *Gateway }

var _ status.Source = statusSource{}

func (s statusSource) Version() string    { return s.g.opts.Version }
func (s statusSource) Started() time.Time { return s.g.startedAt }
func (s statusSource) Ready() []string    { return s.g.readiness() }
func (s statusSource) Draining() bool     { return s.g.draining.Load() }
func (s statusSource) state() string {
	if s.g.draining.Load() {
		return "draining"
	}
	return "serving"
}

func (s statusSource) Listeners() []status.Listener {
	p := s.g.parts.Load()
	if p == nil {
		return nil
	}
	state := s.state()
	var out []status.Listener
	if p.https != nil {
		out = append(out, status.Listener{Kind: "https", Address: p.https.HTTPSAddr().String(), State: state})
		if a := p.https.RedirectAddr(); a != nil {
			out = append(out, status.Listener{Kind: "http_redirect", Address: a.String(), State: state})
		}
	}
	for _, l := range p.sql {
		c := l.Config()
		ls := status.Listener{Kind: "sql", Name: c.Name, State: state, Hostname: c.Hostname, Instance: c.Instance,
			ClientEncryption: string(c.ClientEncryption), Sessions: l.Sessions()}
		if a := l.Addr(); a != nil {
			ls.Address = a.String()
		}
		out = append(out, ls)
	}
	if p.browser != nil && p.browser.Addr() != nil {
		out = append(out, status.Listener{Kind: "sql_browser", Address: "udp " + p.browser.Addr().String(), State: state,
			Instance: strings.Join(p.browser.Instances(), ", ")})
	}
	if p.admin != nil && p.admin.Addr() != nil {
		out = append(out, status.Listener{Kind: "admin", Address: p.admin.Addr().String(), State: state})
	}
	return out
}

func (s statusSource) Upstreams() []status.Upstream {
	p := s.g.parts.Load()
	if p == nil {
		return nil
	}
	var out []status.Upstream
	if p.https != nil {
		for _, u := range p.https.Upstreams() {
			out = append(out, status.Upstream{Kind: "http", Owner: u.Site, Address: u.Address, Healthy: u.Healthy, Verify: u.Verify})
		}
	}
	for _, l := range p.sql {
		out = append(out, status.Upstream{Kind: "sql", Owner: l.Name(), Address: l.Config().Upstream.Address,
			Healthy: l.UpstreamUp(), Verify: l.UpstreamVerify()})
	}
	return out
}

func (s statusSource) Certificates() ([]status.Certificate, []string) {
	now := time.Now()
	var out []status.Certificate
	for _, c := range s.g.certs.Certificates() {
		out = append(out, certificate(c, now))
	}
	return out, s.g.certs.Missing()
}

func certificate(c tlsmgr.CertInfo, now time.Time) status.Certificate {
	return status.Certificate{Names: c.Names, Issuer: c.Issuer, Source: c.Source, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		DaysLeft: c.NotAfter.Sub(now).Hours() / 24, SHA256: c.SHA256}
}
