package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// ErrDisabled is returned by New when http.listen is empty: the
// configuration has no HTTPS front (a SQL-only gateway).
var ErrDisabled = errors.New("proxy: http.listen is empty, the HTTPS front is disabled")

// Server is the HTTPS front and its redirect listener. Create it with New,
// bind with Listen (optional), run with Serve, change its sites and listen
// addresses with Reload (or Stage and Commit) while it serves. Its methods
// are safe for concurrent use; Serve may be called once.
type Server struct {
	opts    options
	log     *zap.Logger // "http"
	root    *zap.Logger // the logger given to New
	access  *zap.Logger // "access": one line per request
	stdLog  *log.Logger
	pool    *bufferPool
	eh      *errorHandler
	baseTLS *tls.Config // New's tlsConfig, cloned; per-site configurations derive from it
	metrics *Metrics
	http1   *http1Names // the names offered only HTTP/1.1 (http2.go)

	// gen is the site table every request and handshake reads; a reload
	// swaps it. redirector is the redirect listener's handler state.
	gen          atomic.Pointer[generation]
	redirector   atomic.Pointer[redirector]
	drainTimeout atomic.Int64 // time.Duration
	inflight     *tracker
	conns        atomic.Int64 // client connections open on the HTTPS listeners
	https        *http.Server
	redirect     *http.Server // serves only while a redirect listener is bound

	// baseCtx is the parent of every request context; cancelling it at the
	// end of the drain aborts upstream requests and upgraded connections,
	// which http.Server.Close does not reach.
	baseCtx context.Context
	cancel  context.CancelFunc

	checks sync.WaitGroup // health-check goroutines

	reloadMu sync.Mutex // held from Stage to Commit or Abort

	mu         sync.Mutex
	cfg        configs.HTTP
	stickyKey  []byte // loaded when a site first needs sticky sessions
	httpsLn    net.Listener
	redirectLn net.Listener
	served     bool                  // Serve was called
	serving    bool                  // Serve is running its listeners (not yet shutting down)
	stopped    bool                  // Serve has begun shutting down
	checkCtx   context.Context       // health checks' parent while serving
	retired    map[net.Listener]bool // closed by a reload: their Serve error is expected
	fail       chan error            // a listener that failed for good
	lnWG       sync.WaitGroup        // listener goroutines
	cut        int                   // requests cut by the last drain

	onShutdown func() // test hook: called when the drain begins
}

// generation is one configuration's sites, indexed; a reload builds the
// next one and swaps it in. Sites whose configuration did not change are
// carried over (same *site: health state, pins, connection pools).
type generation struct {
	sites     []*site
	table     *siteTable
	tlsNeeded bool // some site needs a per-SNI TLS configuration
}

// New builds the sites, their reverse proxies and the upstream transport.
// It does not repeat the checks of configs.Validate; it only refuses what
// would make the proxy misbehave (no site, an unparsable upstream URL).
//
// tlsConfig is the server configuration from tlsmgr; it is cloned, never
// modified, so its GetCertificate or GetConfigForClient callbacks are what
// carries later certificate changes. Its NextProtos (h2, http/1.1,
// acme-tls/1) are kept; net/http only adds h2 and http/1.1 if they are
// missing. When a site asks for client certificates or uses Windows
// authentication, the listener's GetConfigForClient applies that site's
// settings by SNI (clientauth.go). Client TLS toward https:// upstreams is
// built here from each site's upstream_tls with tlsmgr.ClientTLSConfig (or
// taken from WithUpstreamTLSConfig). The names of sites found earlier to
// need HTTP/1.1 are read from the WithHTTP1OnlyFile store; one that cannot
// be read is logged and ignored. A nil logger discards logs.
func New(cfg configs.HTTP, tlsConfig *tls.Config, logger *zap.Logger, opts ...Option) (*Server, error) {
	if cfg.Listen == "" {
		return nil, ErrDisabled
	}
	if tlsConfig == nil {
		return nil, errors.New("proxy: nil TLS config")
	}
	if tlsConfig.GetCertificate == nil && tlsConfig.GetConfigForClient == nil && len(tlsConfig.Certificates) == 0 {
		return nil, errors.New("proxy: TLS config has no certificate source (GetCertificate, GetConfigForClient or Certificates)")
	}
	if len(cfg.Sites) == 0 {
		return nil, errors.New("http.sites: no site configured")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	hlog := logger.Named("http")
	s := &Server{
		cfg:      cfg,
		opts:     o,
		log:      hlog,
		root:     logger,
		access:   logger.Named("access"),
		pool:     &bufferPool{},
		eh:       &errorHandler{log: hlog},
		baseTLS:  tlsConfig.Clone(),
		metrics:  o.metrics,
		inflight: newTracker(),
		retired:  map[net.Listener]bool{},
		fail:     make(chan error, 1),
	}
	s.drainTimeout.Store(int64(o.drainTimeout))
	s.stdLog = newStdLog(hlog, s.handshakeFailed)
	s.http1 = newHTTP1Names(o.http1Only, hlog)
	gen, _, err := s.buildGeneration(cfg.Sites, nil)
	if err != nil {
		return nil, err
	}
	s.gen.Store(gen)
	s.redirector.Store(newRedirector(o.redirectPort, gen.sites))
	s.baseCtx, s.cancel = context.WithCancel(context.Background())

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.https = &http.Server{
		Handler:     &front{srv: s},
		TLSConfig:   s.listenerTLS(),
		ConnContext: withConn,
		ConnState:   s.connState,
		Protocols:   &protos,
		// ReadHeaderTimeout also bounds the TLS handshake. No ReadTimeout
		// or WriteTimeout: they would cut long uploads and downloads.
		ReadHeaderTimeout: o.readHeaderTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    o.maxHeaderBytes,
		ErrorLog:          s.stdLog,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	var redirect http.Handler = redirectSwitch{s}
	if o.challenge != nil {
		if wrapped := o.challenge(redirect); wrapped != nil {
			redirect = wrapped
		}
	}
	s.redirect = &http.Server{
		Handler:           redirect,
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       redirectTimeout,
		WriteTimeout:      redirectTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    o.maxHeaderBytes,
		ErrorLog:          s.stdLog,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	return s, nil
}

// buildGeneration makes the sites of a configuration: those whose
// configuration equals a site of prev are carried over, the others are
// built (upstream transports and TLS, client certificate roots, sticky ids,
// reverse proxies). fresh lists the sites built anew.
func (s *Server) buildGeneration(cfgs []configs.Site, prev *generation) (gen *generation, fresh []*site, err error) {
	if len(cfgs) == 0 {
		return nil, nil, errors.New("http.sites: no site configured")
	}
	var reusable []*site
	if prev != nil {
		reusable = append(reusable, prev.sites...)
	}
	gen = &generation{}
	defer func() {
		if err != nil {
			for _, st := range fresh {
				st.closeIdle()
			}
		}
	}()
	for i, sc := range cfgs {
		if j := indexOfSite(reusable, sc); j >= 0 {
			gen.sites = append(gen.sites, reusable[j])
			reusable = append(reusable[:j], reusable[j+1:]...)
			continue
		}
		st, err := s.buildSite(i, sc)
		if err != nil {
			return nil, fresh, err
		}
		fresh = append(fresh, st)
		gen.sites = append(gen.sites, st)
	}
	gen.table = newSiteTable(gen.sites)
	for _, st := range gen.sites {
		if st.tlsH2 != nil || st.tlsH1 != nil {
			gen.tlsNeeded = true
		}
	}
	return gen, fresh, nil
}

// buildSite makes one site ready to serve.
func (s *Server) buildSite(i int, sc configs.Site) (*site, error) {
	st, err := newSite(i, sc)
	if err != nil {
		return nil, err
	}
	st.log = s.log
	st.metrics = s.metrics
	key := fmt.Sprintf("http.sites[%d]", i)
	if err := st.setClientAuth(sc.ClientAuth, key); err != nil {
		return nil, err
	}
	if err := st.buildPools(&s.opts, s.root); err != nil {
		return nil, err
	}
	if sc.Sticky.Cookie != "" {
		key, err := s.loadStickyKey()
		if err != nil {
			return nil, fmt.Errorf("sticky sessions: %w", err)
		}
		for _, u := range st.upstreams {
			u.id = stickyID(key, st.name, u.raw)
		}
	}
	st.proxy = newReverseProxy(st, s.pool, s.stdLog, s.eh.serve)
	s.prepareSiteTLS(st)
	st.setHTTP2(s.http1)
	return st, nil
}

// loadStickyKey returns the key of sticky cookies, reading or creating it
// the first time a site needs it.
func (s *Server) loadStickyKey() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stickyKey == nil {
		var key []byte
		var err error
		if s.opts.shared != nil {
			key, err = stickyKeyFrom(s.opts.shared)
		} else {
			key, err = loadStickyKey(s.opts.stickyKeyFile)
		}
		if err != nil {
			return nil, err
		}
		s.stickyKey = key
	}
	return s.stickyKey, nil
}

// Listen binds http.listen and, unless it is empty, http.redirect_listen,
// so that their addresses are known (port 0 picks a free port) before Serve.
// It fails if already listening.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpsLn != nil {
		return errors.New("proxy: already listening")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	gen := s.gen.Load()
	fields := []zap.Field{zap.Stringer("https_addr", ln.Addr()), zap.Int("sites", len(gen.sites))}
	if s.cfg.RedirectListen != "" {
		rln, err := net.Listen("tcp", s.cfg.RedirectListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("http.redirect_listen: %w", err)
		}
		s.redirectLn = rln
		fields = append(fields, zap.Stringer("redirect_addr", rln.Addr()))
	}
	s.httpsLn = ln
	s.redirector.Store(newRedirector(s.redirectPortLocked(), gen.sites))
	s.log.Info("listening", fields...)
	return nil
}

// redirectPortLocked is the HTTPS port put into redirects: the configured
// one, else the bound one.
func (s *Server) redirectPortLocked() int {
	if s.opts.redirectPort != 0 {
		return s.opts.redirectPort
	}
	if s.httpsLn != nil {
		if a, ok := s.httpsLn.Addr().(*net.TCPAddr); ok {
			return a.Port
		}
	}
	return 0
}

// HTTPSAddr is the bound HTTPS address, or nil before Listen.
func (s *Server) HTTPSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpsLn == nil {
		return nil
	}
	return s.httpsLn.Addr()
}

// RedirectAddr is the bound redirect address, or nil before Listen or when
// http.redirect_listen is empty.
func (s *Server) RedirectAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.redirectLn == nil {
		return nil
	}
	return s.redirectLn.Addr()
}

// Serve serves both listeners until ctx ends, calling Listen first if that
// has not been done. It starts the health checks and the HTTP/2 probes
// (http2.go) at once; a TLS handshake for a probed site's name waits for
// that site's probe, at most probeTimeout. Then it shuts down: it stops accepting, lets in-flight
// requests finish for up to the drain timeout, cuts the rest and logs how
// many. It returns nil after a shutdown caused by ctx (drained or not), or
// the error of a listener that failed, after shutting the other down.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("proxy: Serve called more than once")
	}
	s.served = true
	listening := s.httpsLn != nil
	s.mu.Unlock()
	if !listening {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.metrics.attach(s)
	defer s.metrics.detach(s)

	checkCtx, stopChecks := context.WithCancel(s.baseCtx)
	defer func() {
		stopChecks()
		s.checks.Wait()
		s.http1.wait()
	}()
	s.mu.Lock()
	s.serving = true
	s.checkCtx = checkCtx
	for _, st := range s.gen.Load().sites {
		// Probes first: handshakes for a probed site's names wait for
		// its probe (awaitProbe), not for the others.
		st.startProbe(checkCtx, &s.checks)
		st.startChecks(checkCtx, &s.checks)
	}
	s.serveHTTPSLocked(s.httpsLn)
	if s.redirectLn != nil {
		s.serveRedirectLocked(s.redirectLn)
	}
	s.mu.Unlock()

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-s.fail:
		s.log.Error("listener failed", zap.Error(failed))
	}
	s.mu.Lock()
	s.serving, s.stopped = false, true
	s.mu.Unlock()
	s.shutdown()
	s.lnWG.Wait()
	return failed
}

// serveHTTPSLocked serves the HTTPS listener ln on its own goroutine.
func (s *Server) serveHTTPSLocked(ln net.Listener) {
	accept := ln
	if s.opts.wrapListener != nil {
		accept = s.opts.wrapListener(ln)
	}
	wrapped := &connListener{Listener: accept, writeIdle: s.opts.writeIdleTimeout, srv: s}
	s.goServeLocked("https", ln, func() error { return s.https.ServeTLS(wrapped, "", "") })
}

// serveRedirectLocked serves the redirect listener ln on its own goroutine.
func (s *Server) serveRedirectLocked(ln net.Listener) {
	s.goServeLocked("redirect", ln, func() error { return s.redirect.Serve(ln) })
}

func (s *Server) goServeLocked(name string, ln net.Listener, serve func() error) {
	s.lnWG.Add(1)
	go func() {
		defer s.lnWG.Done()
		err := serve()
		s.mu.Lock()
		retired := s.retired[ln]
		delete(s.retired, ln)
		s.mu.Unlock()
		if retired || err == nil || errors.Is(err, http.ErrServerClosed) {
			return
		}
		select {
		case s.fail <- fmt.Errorf("serving %s on %s: %w", name, ln.Addr(), err):
		default:
		}
	}()
}

// SetDrainTimeout changes how long the drain at the end of Serve lets
// requests finish (drain_timeout changed by a reload). Zero or negative cuts
// them at once.
func (s *Server) SetDrainTimeout(d time.Duration) { s.drainTimeout.Store(int64(max(d, 0))) }

// InFlight is the number of requests being served now.
func (s *Server) InFlight() int { return s.inflight.count() }

// CutAtDrain is the number of requests the drain cut because they were
// still running when the drain timeout ran out; read it after Serve returns.
func (s *Server) CutAtDrain() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut
}

// UnhealthySites names the sites none of whose upstreams is healthy now
// (every one put aside by the active or passive health check), for a
// readiness check; nil when each site has at least one.
func (s *Server) UnhealthySites() []string {
	now := time.Now().UnixNano()
	var out []string
	for _, st := range s.gen.Load().sites {
		ok := false
		for _, u := range st.upstreams {
			if u.healthy(now) {
				ok = true
				break
			}
		}
		if !ok {
			out = append(out, st.name)
		}
	}
	return out
}

// UpstreamState is one upstream of a site as the status page shows it.
type UpstreamState struct {
	Site    string // the site's first host
	Address string // as configured
	Healthy bool   // neither health check has put it aside
	// Verify is how an https:// upstream's certificate is checked (ca,
	// pin, ca+pin, system, insecure); none for http://.
	Verify string
}

// Upstreams lists every site's upstreams and their health now.
func (s *Server) Upstreams() []UpstreamState {
	now := time.Now().UnixNano()
	var out []UpstreamState
	for _, st := range s.gen.Load().sites {
		for _, u := range st.upstreams {
			out = append(out, UpstreamState{Site: st.name, Address: u.raw, Healthy: u.healthy(now), Verify: upstreamVerify(u.url.Scheme, st.upstreamTLS)})
		}
	}
	return out
}

// upstreamVerify names how an upstream's certificate is verified.
func upstreamVerify(scheme string, t configs.SiteUpstreamTLS) string {
	switch {
	case scheme != "https":
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

// currentSites is the site list in force (tests).
func (s *Server) currentSites() []*site { return s.gen.Load().sites }

// shutdown drains both servers for up to the drain timeout, then cuts what
// is left.
func (s *Server) shutdown() {
	if s.onShutdown != nil {
		s.onShutdown()
	}
	start := time.Now()
	timeout := time.Duration(s.drainTimeout.Load())
	s.log.Info("shutting down", zap.Duration("drain_timeout", timeout),
		zap.Int("requests_in_flight", s.inflight.count()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { _ = s.redirect.Shutdown(ctx) })
	// Shutdown closes the listener and idle connections, sends HTTP/2
	// GOAWAY and waits for active connections; it does not wait for
	// hijacked ones, which the tracker still counts.
	err := s.https.Shutdown(ctx)
	if err == nil {
		err = s.inflight.wait(ctx)
	}
	wg.Wait()

	cut := 0
	if err != nil {
		cut = s.inflight.count()
		s.log.Warn("drain timeout exceeded, closing connections",
			zap.Duration("drain_timeout", timeout), zap.Int("requests_cut", cut))
		// Close connections first so that a cut request ends as a broken
		// connection, not as a 502 page that looks like an upstream fault;
		// then cancel request contexts, which ends upstream round trips
		// and the copy loops of upgraded connections.
		_ = s.https.Close()
		_ = s.redirect.Close()
		s.cancel()
		graceCtx, graceCancel := context.WithTimeout(context.Background(), closeGrace)
		if s.inflight.wait(graceCtx) != nil {
			s.log.Warn("requests still running after close", zap.Int("requests", s.inflight.count()))
		}
		graceCancel()
	} else {
		s.log.Info("shut down", zap.Duration("duration", time.Since(start)))
	}
	s.mu.Lock()
	s.cut = cut
	s.mu.Unlock()
	s.cancel()
	for _, st := range s.gen.Load().sites {
		st.closeIdle()
	}
}

// Close releases a Server that never served (a reload that was refused
// after building it): its sockets and upstream connections. A Server that
// has served stops through Serve's context instead; Close then does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served {
		return
	}
	s.served, s.stopped = true, true
	for _, ln := range []net.Listener{s.httpsLn, s.redirectLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	s.cancel()
	for _, st := range s.gen.Load().sites {
		st.closeIdle()
	}
	s.http1.wait()
}
