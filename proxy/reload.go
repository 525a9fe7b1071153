package proxy

import (
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// A reload (SIGHUP) changes the sites and listen addresses of a running
// Server without dropping a connection:
//
//   - Every request reads the site table when it starts, so requests in
//     flight finish on the site they started on, and the next request, even
//     on a kept-alive connection, sees the new table. A site whose
//     configuration is unchanged is carried over as it is: its health
//     state, Windows-authentication pins and upstream connections stay.
//   - A new http.listen or http.redirect_listen address is bound first (a
//     failure refuses the reload); then the new socket serves and the old
//     one stops accepting. Connections accepted on the old socket stay
//     with the same http.Server and finish normally.
//
// Stage does everything that can fail, Commit everything that cannot, so
// that a caller combining several parts (the certificates of new names
// first) can refuse the whole reload.

// ReloadSummary says what a reload changed, for the "config reloaded" line.
type ReloadSummary struct {
	SitesAdded   []string // first host of each site built anew
	SitesRemoved []string // first host of each site no longer served
	SitesKept    int      // sites carried over unchanged
	HTTPSAddr    string   // the new HTTPS address, when http.listen changed
	RedirectAddr string   // the new redirect address, when http.redirect_listen changed ("" if disabled)
	ListenChange bool     // http.listen or http.redirect_listen changed
}

// Staged is a reload prepared by Stage: new sites built and new listen
// addresses bound, nothing served yet. Exactly one of Commit and Abort must
// be called; until then other reloads wait.
type Staged struct {
	s           *Server
	cfg         configs.HTTP
	gen         *generation
	fresh       []*site
	httpsLn     net.Listener // nil: http.listen unchanged
	redirectLn  net.Listener // the new redirect socket; nil when disabled or unchanged
	redirectSet bool         // http.redirect_listen changed
	done        bool
}

// Stage prepares a reload to cfg. An empty http.listen is refused
// (ErrDisabled): the caller stops the Server instead.
func (s *Server) Stage(cfg configs.HTTP) (*Staged, error) {
	if cfg.Listen == "" {
		return nil, ErrDisabled
	}
	s.reloadMu.Lock()
	gen, fresh, err := s.buildGeneration(cfg.Sites, s.gen.Load())
	if err != nil {
		s.reloadMu.Unlock()
		return nil, err
	}
	st := &Staged{s: s, cfg: cfg, gen: gen, fresh: fresh}
	s.mu.Lock()
	cur := s.cfg
	s.mu.Unlock()
	if cfg.Listen != cur.Listen {
		if st.httpsLn, err = net.Listen("tcp", cfg.Listen); err != nil {
			st.Abort()
			return nil, fmt.Errorf("http.listen: %w", err)
		}
	}
	if cfg.RedirectListen != cur.RedirectListen {
		st.redirectSet = true
		if cfg.RedirectListen != "" {
			if st.redirectLn, err = net.Listen("tcp", cfg.RedirectListen); err != nil {
				st.Abort()
				return nil, fmt.Errorf("http.redirect_listen: %w", err)
			}
		}
	}
	return st, nil
}

// Abort gives up a staged reload: the sites built for it and the sockets
// bound for it are closed, and the Server goes on as before.
func (st *Staged) Abort() {
	if st.done {
		return
	}
	st.done = true
	for _, site := range st.fresh {
		site.closeIdle()
	}
	if st.httpsLn != nil {
		_ = st.httpsLn.Close()
	}
	if st.redirectLn != nil {
		_ = st.redirectLn.Close()
	}
	st.s.reloadMu.Unlock()
}

// Commit puts a staged reload into effect. On a serving Server it starts
// the health checks of the new sites and probes every site for Windows
// authentication again (http2.go); handshakes for a new site's names wait
// for its probe.
func (st *Staged) Commit() ReloadSummary {
	if st.done {
		return ReloadSummary{}
	}
	st.done = true
	s := st.s
	defer s.reloadMu.Unlock()

	old := s.gen.Load()
	s.gen.Store(st.gen)
	var sum ReloadSummary
	var removed []*site
	for _, site := range old.sites {
		if !slices.Contains(st.gen.sites, site) {
			removed = append(removed, site)
			sum.SitesRemoved = append(sum.SitesRemoved, site.name)
		}
	}
	for _, site := range st.fresh {
		sum.SitesAdded = append(sum.SitesAdded, site.name)
	}
	sum.SitesKept = len(st.gen.sites) - len(st.fresh)

	s.mu.Lock()
	s.cfg = st.cfg
	if s.stopped {
		// Serve has ended: nothing will serve the new sockets.
		for _, ln := range []net.Listener{st.httpsLn, st.redirectLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		st.httpsLn, st.redirectLn, st.redirectSet = nil, nil, false
	}
	if st.httpsLn != nil {
		sum.ListenChange = true
		sum.HTTPSAddr = st.httpsLn.Addr().String()
		old := s.httpsLn
		s.httpsLn = st.httpsLn
		if s.serving {
			s.serveHTTPSLocked(st.httpsLn)
		}
		s.retireLocked(old)
	}
	if st.redirectSet {
		sum.ListenChange = true
		old := s.redirectLn
		s.redirectLn = st.redirectLn
		if st.redirectLn != nil {
			sum.RedirectAddr = st.redirectLn.Addr().String()
			if s.serving {
				s.serveRedirectLocked(st.redirectLn)
			}
		}
		s.retireLocked(old)
	}
	for _, site := range removed {
		site.stopChecks()
	}
	if s.serving {
		for _, site := range st.fresh {
			site.startChecks(s.checkCtx, &s.checks)
		}
		// Every site is probed again, kept ones included: a reload is
		// also how an operator says that IIS changed.
		for _, site := range st.gen.sites {
			site.startProbe(s.checkCtx, &s.checks)
		}
	}
	s.redirector.Store(newRedirector(s.redirectPortLocked(), st.gen.sites))
	s.mu.Unlock()

	// Requests already on a removed site keep its connections until they
	// finish; what is idle now goes.
	for _, site := range removed {
		site.closeIdle()
	}
	fields := []zap.Field{zap.Strings("sites_added", sum.SitesAdded), zap.Strings("sites_removed", sum.SitesRemoved),
		zap.Int("sites_kept", sum.SitesKept)}
	if sum.HTTPSAddr != "" {
		fields = append(fields, zap.String("https_addr", sum.HTTPSAddr))
	}
	if st.redirectSet {
		fields = append(fields, zap.String("redirect_addr", sum.RedirectAddr))
	}
	s.log.Info("sites reloaded", fields...)
	return sum
}

// retireLocked stops accepting on ln (nil does nothing); its serving
// goroutine's error is then expected, not a failure.
func (s *Server) retireLocked(ln net.Listener) {
	if ln == nil {
		return
	}
	if s.serving {
		s.retired[ln] = true
	}
	_ = ln.Close()
}

// Reload is Stage followed by Commit.
func (s *Server) Reload(cfg configs.HTTP) (ReloadSummary, error) {
	st, err := s.Stage(cfg)
	if err != nil {
		return ReloadSummary{}, err
	}
	return st.Commit(), nil
}

// indexOfSite returns the index of the site in list whose configuration
// equals cfg, or -1.
func indexOfSite(list []*site, cfg configs.Site) int {
	return slices.IndexFunc(list, func(s *site) bool { return reflect.DeepEqual(s.cfg, cfg) })
}

// redirectSwitch is the redirect listener's handler: the redirector of the
// configuration in force.
type redirectSwitch struct{ s *Server }

func (h redirectSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.s.redirector.Load().ServeHTTP(w, r)
}
