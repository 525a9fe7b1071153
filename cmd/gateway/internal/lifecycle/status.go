package lifecycle

import (
	"github.com/gateway-project/gateway/tlsmgr"
)

// readiness returns why the gateway should not get traffic now, one short
// reason each; none means ready. It reads snapshots only, so that a reload
// waiting on an ACME server never blocks a probe.
func (g *Gateway) readiness() []string {
	if g.draining.Load() {
		return []string{"draining"}
	}
	if !g.started.Load() {
		return []string{"starting"}
	}
	var out []string
	p := g.parts.Load()
	if p.https != nil {
		for _, site := range p.https.UnhealthySites() {
			out = append(out, "site "+site+": no healthy upstream")
		}
	}
	for _, l := range p.sql {
		if !l.UpstreamUp() {
			out = append(out, "sql listener "+l.Name()+": upstream unreachable")
		}
	}
	for _, n := range g.certs.Missing() {
		out = append(out, "certificate for "+n+": not loaded")
	}
	return out
}

// certReport is the body of /certs.
type certReport struct {
	Certificates []tlsmgr.CertInfo `json:"certificates"`
	// Missing lists managed names that have no certificate right now.
	Missing []string `json:"missing,omitempty"`
}

func (g *Gateway) certReport() any {
	certs := g.certs.Certificates()
	if certs == nil {
		certs = []tlsmgr.CertInfo{}
	}
	return certReport{Certificates: certs, Missing: g.certs.Missing()}
}
