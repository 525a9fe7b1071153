package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
)

// reloadCertTimeout bounds obtaining certificates for the names a reload
// adds (an ACME order); past it the reload is refused.
const reloadCertTimeout = 5 * time.Minute

// Reload re-reads the configuration from where the running one came from
// and applies it without dropping a connection, all of it or nothing:
//
//   - an invalid file, a change to a key that needs a restart, a listen
//     address that cannot be bound or a certificate that cannot be loaded or
//     obtained refuses the reload; the running configuration stays and one
//     "config reload failed" line lists every problem, each naming its key;
//   - otherwise sites and upstreams change for the next request
//     (proxy.Server.Stage), SQL listeners are added, replaced (taking over the
//     old socket when the address is the same) or retired, with their open
//     sessions going on on the old configuration until they end, and one
//     "config reloaded" line says what changed.
//
// A reload is prepared front by front (stages.go), then committed; see
// docs/architecture.md, "Reload and drain".
func (g *Gateway) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	switch {
	case g.draining.Load():
		g.logger.Info("config reload ignored: the gateway is draining")
		return nil
	case g.opts.Load == nil:
		g.logger.Warn("config reload is not available for this command; restart to apply changes")
		return nil
	}
	g.life.Reloading()
	start := time.Now()
	fields, err := g.applyReload()
	status := fmt.Sprintf("serving %d site(s) and %d sql listener(s)", len(g.cfg.HTTP.Sites), len(g.sql))
	g.life.Ready(status)
	if err != nil {
		g.process.ReloadFailed()
		g.logger.Error("config reload failed; keeping the running configuration",
			zap.Strings("problems", problemsOf(err)))
		return err
	}
	g.process.ReloadSucceeded(time.Now())
	g.logger.Info("config reloaded", append(fields, zap.Duration("duration", time.Since(start)))...)
	return nil
}

// problemsOf lists an error's problems, each naming its key where the
// error knows it.
func problemsOf(err error) []string {
	var ve *configs.ValidationError
	if errors.As(err, &ve) {
		out := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			out[i] = p.String()
		}
		return out
	}
	var pe *tlsmgr.PlanError
	if errors.As(err, &pe) {
		out := make([]string, len(pe.Problems))
		for i, p := range pe.Problems {
			out[i] = p.String()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// applyReload loads and checks the next configuration, prepares every
// front's stage, obtains the certificates, then commits the stages in
// order. It returns the fields of the "config reloaded" line.
func (g *Gateway) applyReload() ([]zap.Field, error) {
	loaded, err := g.opts.Load()
	if err != nil {
		return nil, err
	}
	next := loaded.Config
	if err := configs.CheckReload(&g.cfg, &next); err != nil {
		return nil, err
	}
	var stages []stage
	committed := false
	defer func() {
		if !committed {
			for _, s := range stages {
				s.abort()
			}
		}
	}()
	// Each prepare builds and binds what its front will need, touching
	// nothing that serves; the first that fails refuses the reload.
	for _, prepare := range []func(*configs.Config) (stage, error){
		g.prepareLevel,
		g.prepareRuntime,
		g.prepareHTTPS,
		g.prepareSQL,
		g.prepareAdmin,
		// Certificates last among what can fail, first among what takes
		// effect: names a new site or listener needs are served before it
		// is. The browser is committed after the SQL listeners, whose new
		// ports it announces.
		g.prepareCertificates,
		g.prepareBrowser,
	} {
		s, err := prepare(&next)
		if err != nil {
			return nil, err
		}
		stages = append(stages, s)
	}
	committed = true
	var fields []zap.Field
	for _, s := range stages {
		fields = append(fields, s.commit(&next)...)
	}
	if next.DrainTimeout != g.cfg.DrainTimeout {
		fields = append(fields, zap.Duration("drain_timeout", next.DrainTimeout))
	}
	g.cfg = next
	g.storeParts()
	return fields, nil
}

// prepareCertificates makes the certificate manager serve next's names
// (obtaining the new ones) and load its operator files. It takes effect at
// once: the other fronts are prepared by then, and names no longer
// configured are simply no longer asked for.
func (g *Gateway) prepareCertificates(next *configs.Config) (stage, error) {
	ctx, cancel := context.WithTimeout(g.ctx, reloadCertTimeout)
	defer cancel()
	sum, err := g.certs.Reconfigure(ctx, next.TLS, next.Names())
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	return certStage{sum}, nil
}

type certStage struct{ sum tlsmgr.ReconfigureSummary }

func (certStage) abort() {}

func (c certStage) commit(*configs.Config) []zap.Field {
	fields := []zap.Field{zap.Strings("certificates_added", c.sum.Added), zap.Strings("certificates_removed", c.sum.Removed)}
	if len(c.sum.OperatorFile) > 0 {
		fields = append(fields, zap.Strings("operator_certificates_loaded", c.sum.OperatorFile))
	}
	return fields
}
