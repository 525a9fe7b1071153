package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/cmd/gateway/internal/admin"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/proxy"
	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/tlsmgr"
)

// reloadCertTimeout bounds obtaining certificates for the names a reload
// adds (an ACME order); past it the reload is refused.
const reloadCertTimeout = 5 * time.Minute

// notifyHangup starts catching SIGHUP into a channel that holds one pending
// signal, for watchHangup.
func notifyHangup() chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch
}

// watchHangup reloads the configuration on SIGHUP caught by notifyHangup (and on the requests
// carried by ctx: the Windows service manager's "paramchange"). It also keeps
// SIGHUP from terminating the process, its default action.
func watchHangup(ctx context.Context, logger *zap.Logger, ch chan os.Signal, reload func() error) (stop func()) {
	requests := reloadRequestsFrom(ctx)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				logger.Info("sighup received: reloading configuration")
			case <-requests:
				logger.Info("reload requested by the service manager")
			case <-done:
				return
			}
			_ = reload() // logged
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// reload re-reads the configuration from where the running one came from
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
func (g *runningGateway) reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	switch {
	case g.draining.Load():
		g.logger.Info("config reload ignored: the gateway is draining")
		return nil
	case g.opts.load == nil:
		g.logger.Warn("config reload is not available for this command; restart to apply changes")
		return nil
	}
	g.life.reloading()
	start := time.Now()
	fields, err := g.applyReload()
	status := fmt.Sprintf("serving %d site(s) and %d sql listener(s)", len(g.cfg.HTTP.Sites), len(g.sql))
	g.life.ready(status)
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

// sqlChange is a SQL listener a reload replaces.
type sqlChange struct {
	old, next *sqltunnel.Listener
	handOff   bool // same address: next takes over old's socket
}

// staged is everything a reload prepared; abort undoes it.
type staged struct {
	https      *proxy.Staged // the running front's new sites and addresses
	newHTTPS   *proxy.Server // a front the reload enables (bound, not serving)
	stopHTTPS  bool          // the reload disables the front
	sqlAdded   []*sqltunnel.Listener
	sqlChanged []sqlChange
	sqlRemoved []*sqltunnel.Listener
	sqlKept    []*sqltunnel.Listener
	adminSet   bool
	newAdmin   *admin.Server
	browserSet bool               // sql_browser.listen changed
	newBrowser *browser.Responder // bound, not serving; nil when it is now ""
}

func (st *staged) abort() {
	if st.https != nil {
		st.https.Abort()
	}
	// A front or listener built for the reload never served: closing its
	// sockets is all there is to undo.
	if st.newHTTPS != nil {
		st.newHTTPS.Close()
	}
	for _, l := range st.sqlAdded {
		l.Retire(false)
	}
	for _, c := range st.sqlChanged {
		if !c.handOff {
			c.next.Retire(false)
		}
	}
	if st.newAdmin != nil {
		st.newAdmin.Close()
	}
	if st.newBrowser != nil {
		_ = st.newBrowser.Close()
	}
}

// applyReload prepares every part, obtains the certificates, then commits.
// It returns the fields of the "config reloaded" line.
func (g *runningGateway) applyReload() ([]zap.Field, error) {
	loaded, err := g.opts.load()
	if err != nil {
		return nil, err
	}
	next := loaded.Config
	if err := configs.CheckReload(&g.cfg, &next); err != nil {
		return nil, err
	}
	var st staged
	committed := false
	defer func() {
		if !committed {
			st.abort()
		}
	}()

	switch {
	case g.https != nil && next.HTTP.Listen != "":
		if st.https, err = g.https.Stage(next.HTTP); err != nil {
			return nil, err
		}
	case g.https == nil && next.HTTP.Listen != "":
		if st.newHTTPS, err = g.newHTTPS(next); err != nil {
			return nil, fmt.Errorf("https front: %w", err)
		}
	case g.https != nil:
		st.stopHTTPS = true
	}

	current := map[string]*sqltunnel.Listener{}
	for _, l := range g.sql {
		current[l.Name()] = l
	}
	for i, lc := range next.SQL {
		old := current[lc.Name]
		delete(current, lc.Name)
		if old != nil && old.Config().Equal(lc) {
			st.sqlKept = append(st.sqlKept, old)
			continue
		}
		l, err := g.newSQLListener(lc, next.DrainTimeout)
		if err != nil {
			return nil, fmt.Errorf("sql[%d] (%s): %w", i, lc.Name, err)
		}
		if old != nil && sameAddress(old, lc.Listen) {
			st.sqlChanged = append(st.sqlChanged, sqlChange{old: old, next: l, handOff: true})
			continue
		}
		if err := l.Listen(); err != nil {
			return nil, fmt.Errorf("sql[%d].listen: %w", i, err)
		}
		if old != nil {
			st.sqlChanged = append(st.sqlChanged, sqlChange{old: old, next: l})
		} else {
			st.sqlAdded = append(st.sqlAdded, l)
		}
	}
	for _, l := range g.sql {
		if current[l.Name()] != nil {
			st.sqlRemoved = append(st.sqlRemoved, l)
		}
	}

	if next.Admin.Listen != g.cfg.Admin.Listen {
		st.adminSet = true
		if next.Admin.Listen != "" {
			a := g.newAdmin(next.Admin.Listen)
			if err := a.Listen(); err != nil {
				return nil, err
			}
			st.newAdmin = a
		}
	}

	if next.SQLBrowser.Listen != g.cfg.SQLBrowser.Listen {
		st.browserSet = true
		if st.newBrowser, err = g.newBrowser(next.SQLBrowser); err != nil {
			return nil, err
		}
	}

	// Certificates last among what can fail, first among what takes
	// effect: names a new site or listener needs are served before it is.
	ctx, cancel := context.WithTimeout(g.ctx, reloadCertTimeout)
	certSum, err := g.certs.Reconfigure(ctx, next.TLS, next.Names())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}

	committed = true
	return g.commit(next, &st, certSum), nil
}

// commit puts a prepared reload into effect; nothing in it fails.
func (g *runningGateway) commit(next configs.Config, st *staged, certSum tlsmgr.ReconfigureSummary) []zap.Field {
	var fields []zap.Field
	if g.opts.level != nil {
		if lvl, err := zapcore.ParseLevel(string(next.Log.Level)); err == nil && lvl != g.opts.level.Level() {
			g.opts.level.SetLevel(lvl)
			fields = append(fields, zap.String("log_level", string(next.Log.Level)))
		}
	}

	switch {
	case st.https != nil:
		sum := st.https.Commit()
		fields = append(fields, zap.Strings("sites_added", sum.SitesAdded), zap.Strings("sites_removed", sum.SitesRemoved),
			zap.Int("sites_kept", sum.SitesKept))
		if sum.ListenChange {
			if err := g.setChallengeAddresses(g.https); err != nil {
				g.logger.Warn("updating ACME challenge addresses", zap.Error(err))
			}
			fields = append(fields, zap.Stringer("https_addr", g.https.HTTPSAddr()))
			if a := g.https.RedirectAddr(); a != nil {
				fields = append(fields, zap.Stringer("redirect_addr", a))
			}
		}
	case st.newHTTPS != nil:
		g.https = st.newHTTPS
		if err := g.setChallengeAddresses(g.https); err != nil {
			g.logger.Warn("updating ACME challenge addresses", zap.Error(err))
		}
		g.serveHTTPS(g.https)
		fields = append(fields, zap.String("https", "enabled"), zap.Stringer("https_addr", g.https.HTTPSAddr()))
	case st.stopHTTPS:
		// The front drains as at shutdown: in-flight requests get
		// drain_timeout to finish.
		g.httpsCancel()
		g.https, g.httpsCancel = nil, nil
		fields = append(fields, zap.String("https", "disabled"))
	}
	if g.https != nil {
		g.https.SetDrainTimeout(next.DrainTimeout)
	}

	var list []*sqltunnel.Listener
	var added, changed, removed []string
	for _, l := range st.sqlKept {
		l.SetDrainTimeout(next.DrainTimeout)
	}
	for _, c := range st.sqlChanged {
		if c.handOff {
			ln := c.old.Retire(true)
			var err error
			if ln != nil {
				err = c.next.Adopt(ln)
			} else {
				err = c.next.Listen()
			}
			if err != nil {
				g.logger.Error("sql listener could not take over its address; it is down until the next reload or restart",
					zap.String("listener", c.next.Name()), zap.Error(err))
				continue
			}
		} else {
			c.old.Retire(false)
		}
		g.serveSQL(c.next)
		changed = append(changed, c.next.Name())
	}
	for _, l := range st.sqlAdded {
		g.serveSQL(l)
		added = append(added, l.Name())
	}
	for _, l := range st.sqlRemoved {
		l.Retire(false)
		removed = append(removed, l.Name())
	}
	byName := map[string]*sqltunnel.Listener{}
	for _, l := range st.sqlKept {
		byName[l.Name()] = l
	}
	for _, c := range st.sqlChanged {
		byName[c.next.Name()] = c.next
	}
	for _, l := range st.sqlAdded {
		byName[l.Name()] = l
	}
	for _, lc := range next.SQL {
		if l := byName[lc.Name]; l != nil && l.Addr() != nil {
			list = append(list, l)
		}
	}
	g.sql = list
	fields = append(fields, zap.Strings("sql_added", added), zap.Strings("sql_changed", changed),
		zap.Strings("sql_removed", removed), zap.Int("sql_kept", len(st.sqlKept)))
	if len(list) > 0 {
		fields = append(fields, zap.Any("sql_listeners", sqlAddrs(list)))
	}

	if st.adminSet {
		if g.adminCancel != nil {
			g.adminCancel()
			<-g.adminDone
		}
		g.admin, g.adminCancel, g.adminDone = nil, nil, make(chan struct{})
		g.serveAdmin(st.newAdmin)
		if st.newAdmin != nil {
			fields = append(fields, zap.Stringer("admin_addr", st.newAdmin.Addr()))
		} else {
			fields = append(fields, zap.String("admin_addr", ""))
		}
	}

	fields = append(fields, zap.Strings("certificates_added", certSum.Added), zap.Strings("certificates_removed", certSum.Removed))
	if len(certSum.OperatorFile) > 0 {
		fields = append(fields, zap.Strings("operator_certificates_loaded", certSum.OperatorFile))
	}
	if next.DrainTimeout != g.cfg.DrainTimeout {
		fields = append(fields, zap.Duration("drain_timeout", next.DrainTimeout))
	}
	g.cfg = next
	// The Browser announces the listeners' new ports (a changed or added
	// listener may have a new one).
	if st.browserSet {
		g.serveBrowser(st.newBrowser)
		addr := ""
		if st.newBrowser != nil {
			addr = st.newBrowser.Addr().String()
		}
		fields = append(fields, zap.String("sql_browser_addr", addr))
	} else {
		g.announce()
	}
	g.storeParts()
	return fields
}

// sameAddress reports whether listen names the address old listens on: the
// same text, or the address it is bound to (":0" in the running
// configuration written out as the port it got).
func sameAddress(old *sqltunnel.Listener, listen string) bool {
	if old.Config().Listen == listen {
		return true
	}
	a := old.Addr()
	return a != nil && a.String() == listen
}
