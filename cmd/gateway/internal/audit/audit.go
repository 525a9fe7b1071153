package audit

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/status"
	"github.com/gateway-project/gateway/configs"
)

// Options say what to audit.
type Options struct {
	Config     configs.Config
	ConfigFile string
	// Since is the span of the running gateway's traffic to report.
	Since time.Duration
	// Roots are trusted besides the system roots when verifying the
	// gateway's own certificates (the internal CA root, tls.acme.ca_root).
	Roots []*x509.Certificate
	// Getenv reads the audit logins' passwords (os.Getenv).
	Getenv func(string) string
	Logger *zap.Logger
}

// Run audits and returns the report; an error means it could not run at
// all (the report then holds what it found before).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	r := &Report{Schema: Schema, Generated: time.Now().UTC(), Config: o.ConfigFile, Verdict: Pass,
		Checks: []Check{}, Listeners: []Scan{}, Upstreams: []Leg{}, SQLServer: []SQLView{}}
	a := &auditor{o: o, r: r, log: o.Logger.Named("audit")}
	a.roots = x509.NewCertPool()
	if sys, err := x509.SystemCertPool(); err == nil {
		a.roots = sys
	}
	for _, c := range o.Roots {
		a.roots.AddCert(c)
	}
	a.gateway(ctx)
	a.https(ctx)
	for _, l := range o.Config.SQL {
		a.sqlListener(ctx, l)
	}
	a.upstreams(ctx)
	for _, l := range o.Config.SQL {
		a.sqlServer(ctx, l)
	}
	a.traffic(ctx)
	return r, nil
}

// auditor runs the checks of one report.
type auditor struct {
	o     Options
	r     *Report
	log   *zap.Logger
	roots *x509.CertPool
	snap  *status.Snapshot // the running gateway's, when it answered
}

// gateway asks the running gateway's admin endpoint for its status, with
// the traffic window.
func (a *auditor) gateway(ctx context.Context) {
	g := &a.r.Gateway
	listen := a.o.Config.Admin.Listen
	if listen == "" {
		g.Error = "admin.listen is empty: no endpoint to ask"
		a.r.add(Check{ID: "gateway.reachable", Section: "gateway", Subject: "admin endpoint", Title: "A running gateway answered",
			Verdict: NotRun, Finding: "admin.listen is \"\": the checks that need a running gateway (traffic, listener states) were not run.",
			Fix: "set admin.listen (e.g. 127.0.0.1:9901) so that the audit can read what the gateway saw", Key: "admin.listen"})
		return
	}
	g.AdminURL = "http://" + dialable(listen) + "/"
	u := g.AdminURL + "status.json"
	if a.o.Since > 0 {
		u += "?since=" + a.o.Since.String()
	}
	snap, err := fetchStatus(ctx, u)
	if err != nil {
		g.Error = err.Error()
		a.r.add(Check{ID: "gateway.reachable", Section: "gateway", Subject: g.AdminURL, Title: "A running gateway answered",
			Verdict: NotRun, Finding: "no gateway answered at " + g.AdminURL + " (" + err.Error() + "): only the checks that need no running gateway were run."})
		return
	}
	a.snap = snap
	g.Reachable, g.Version, g.Started, g.Ready, g.NotReady = true, snap.Version, snap.Started, snap.Ready, snap.NotReady
	c := Check{ID: "gateway.ready", Section: "gateway", Subject: g.AdminURL, Title: "The gateway is ready", Verdict: Pass,
		Finding: fmt.Sprintf("gateway %s, up since %s, ready", snap.Version, snap.Started.Format(time.RFC3339))}
	if !snap.Ready {
		c.Verdict, c.Finding = Fail, "not ready: "+strings.Join(snap.NotReady, "; ")
		c.Fix = "see /readyz: each reason names the listener, upstream or certificate to repair"
	}
	a.r.add(c)
}

func fetchStatus(ctx context.Context, url string) (*status.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var s status.Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	return &s, nil
}

// listenerAddr is where to connect to a listener: as the running gateway
// bound it, else its configured address (an unspecified host means this
// host). "" when neither says (port 0 and no gateway answered).
func (a *auditor) listenerAddr(kind, name, configured string) string {
	if a.snap != nil {
		for _, l := range a.snap.Listeners {
			if l.Kind == kind && (name == "" || l.Name == name) {
				return dialable(strings.TrimPrefix(l.Address, "udp "))
			}
		}
	}
	if strings.HasSuffix(configured, ":0") {
		return ""
	}
	return dialable(configured)
}

// dialable turns a listen address into one to connect to: an empty or
// unspecified host is this host's loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func itoa(n int) string { return strconv.Itoa(n) }
