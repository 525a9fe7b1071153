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
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// ErrDisabled is returned by New when http.listen is empty: the
// configuration has no HTTPS front (a SQL-only gateway).
var ErrDisabled = errors.New("proxy: http.listen is empty, the HTTPS front is disabled")

// Server is the HTTPS front and its redirect listener. Create it with New,
// bind with Listen (optional), run with Serve. Its methods are safe for
// concurrent use; Serve may be called once.
type Server struct {
	cfg      configs.HTTP
	opts     options
	log      *zap.Logger
	sites    []*site
	inflight *tracker
	https    *http.Server
	redirect *http.Server // nil when http.redirect_listen is ""

	// baseCtx is the parent of every request context; cancelling it at the
	// end of the drain aborts upstream requests and upgraded connections,
	// which http.Server.Close does not reach.
	baseCtx context.Context
	cancel  context.CancelFunc

	mu         sync.Mutex
	httpsLn    net.Listener
	redirectLn net.Listener
	served     bool

	onShutdown func() // test hook: called when the drain begins
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
// authentication, the clone gets a GetConfigForClient that applies that
// site's settings by SNI (clientauth.go). Client TLS toward https://
// upstreams is built here from each site's upstream_tls with
// tlsmgr.ClientTLSConfig (or taken from WithUpstreamTLSConfig). A nil logger
// discards logs.
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
	log := logger.Named("http")
	stdLog := newStdLog(log)

	s := &Server{
		cfg:      cfg,
		opts:     o,
		log:      log,
		inflight: newTracker(),
	}
	if err := s.buildSites(logger, stdLog); err != nil {
		return nil, err
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	table := newSiteTable(s.sites)

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	s.https = &http.Server{
		Handler:     &front{sites: table, inflight: s.inflight, log: log},
		TLSConfig:   listenerTLS(tlsConfig, s.sites, table),
		ConnContext: withConn,
		Protocols:   &protos,
		// ReadHeaderTimeout also bounds the TLS handshake. No ReadTimeout
		// or WriteTimeout: they would cut long uploads and downloads.
		ReadHeaderTimeout: o.readHeaderTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    o.maxHeaderBytes,
		ErrorLog:          stdLog,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	if cfg.RedirectListen != "" {
		s.redirect = &http.Server{
			// Handler is set by Listen, once the HTTPS port is known.
			ReadHeaderTimeout: o.readHeaderTimeout,
			ReadTimeout:       redirectTimeout,
			WriteTimeout:      redirectTimeout,
			IdleTimeout:       o.idleTimeout,
			MaxHeaderBytes:    o.maxHeaderBytes,
			ErrorLog:          stdLog,
			BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		}
	}
	return s, nil
}

// buildSites makes the sites from the configuration: upstream transports
// and TLS, client certificate roots, sticky ids and reverse proxies.
func (s *Server) buildSites(logger *zap.Logger, stdLog *log.Logger) error {
	var stickyKey []byte
	for _, sc := range s.cfg.Sites {
		if sc.Sticky.Cookie != "" {
			key, err := loadStickyKey(s.opts.stickyKeyFile)
			if err != nil {
				return fmt.Errorf("sticky sessions: %w", err)
			}
			stickyKey = key
			break
		}
	}
	pool := &bufferPool{}
	eh := &errorHandler{log: s.log}
	for i, sc := range s.cfg.Sites {
		st, err := newSite(i, sc)
		if err != nil {
			return err
		}
		st.log = s.log
		key := fmt.Sprintf("http.sites[%d]", i)
		if err := st.setClientAuth(sc.ClientAuth, key); err != nil {
			return err
		}
		if err := st.buildPools(&s.opts, logger); err != nil {
			return err
		}
		for _, u := range st.upstreams {
			if stickyKey != nil {
				u.id = stickyID(stickyKey, st.name, u.raw)
			}
		}
		st.proxy = newReverseProxy(st, pool, stdLog, eh.serve)
		s.sites = append(s.sites, st)
	}
	return nil
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
	fields := []zap.Field{zap.Stringer("https_addr", ln.Addr()), zap.Int("sites", len(s.sites))}
	if s.redirect != nil {
		rln, err := net.Listen("tcp", s.cfg.RedirectListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("http.redirect_listen: %w", err)
		}
		port := s.opts.redirectPort
		if port == 0 {
			if a, ok := ln.Addr().(*net.TCPAddr); ok {
				port = a.Port
			}
		}
		var h http.Handler = newRedirector(port, s.sites)
		if s.opts.challenge != nil {
			if wrapped := s.opts.challenge(h); wrapped != nil {
				h = wrapped
			}
		}
		s.redirect.Handler = h
		s.redirectLn = rln
		fields = append(fields, zap.Stringer("redirect_addr", rln.Addr()))
	}
	s.httpsLn = ln
	s.log.Info("listening", fields...)
	return nil
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
// has not been done. Then it shuts down: it stops accepting, lets in-flight
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

	var checks sync.WaitGroup
	checkCtx, stopChecks := context.WithCancel(s.baseCtx)
	defer func() {
		stopChecks()
		checks.Wait()
	}()
	for _, st := range s.sites {
		st.runHealthChecks(checkCtx, &checks)
	}

	errc := make(chan error, 2)
	jobs := 1
	ln := &connListener{Listener: s.httpsLn, writeIdle: s.opts.writeIdleTimeout}
	go func() { errc <- serveResult("https", s.httpsLn, s.https.ServeTLS(ln, "", "")) }()
	if s.redirectLn != nil {
		jobs++
		go func() { errc <- serveResult("redirect", s.redirectLn, s.redirect.Serve(s.redirectLn)) }()
	}

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errc:
		jobs--
		if failed != nil {
			s.log.Error("listener failed", zap.Error(failed))
		}
	}
	s.shutdown()
	for ; jobs > 0; jobs-- {
		if err := <-errc; err != nil && failed == nil {
			failed = err
		}
	}
	return failed
}

func serveResult(name string, ln net.Listener, err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving %s on %s: %w", name, ln.Addr(), err)
}

// shutdown drains both servers for up to the drain timeout, then cuts what
// is left.
func (s *Server) shutdown() {
	if s.onShutdown != nil {
		s.onShutdown()
	}
	start := time.Now()
	s.log.Info("shutting down", zap.Duration("drain_timeout", s.opts.drainTimeout),
		zap.Int("requests_in_flight", s.inflight.count()))
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.drainTimeout)
	defer cancel()

	var wg sync.WaitGroup
	if s.redirect != nil {
		wg.Go(func() { _ = s.redirect.Shutdown(ctx) })
	}
	// Shutdown closes the listener and idle connections, sends HTTP/2
	// GOAWAY and waits for active connections; it does not wait for
	// hijacked ones, which the tracker still counts.
	err := s.https.Shutdown(ctx)
	if err == nil {
		err = s.inflight.wait(ctx)
	}
	wg.Wait()

	if err != nil {
		cut := s.inflight.count()
		s.log.Warn("drain timeout exceeded, closing connections",
			zap.Duration("drain_timeout", s.opts.drainTimeout), zap.Int("requests_cut", cut))
		// Close connections first so that a cut request ends as a broken
		// connection, not as a 502 page that looks like an upstream fault;
		// then cancel request contexts, which ends upstream round trips
		// and the copy loops of upgraded connections.
		_ = s.https.Close()
		if s.redirect != nil {
			_ = s.redirect.Close()
		}
		s.cancel()
		graceCtx, graceCancel := context.WithTimeout(context.Background(), closeGrace)
		if s.inflight.wait(graceCtx) != nil {
			s.log.Warn("requests still running after close", zap.Int("requests", s.inflight.count()))
		}
		graceCancel()
	} else {
		s.log.Info("shut down", zap.Duration("duration", time.Since(start)))
	}
	s.cancel()
	for _, st := range s.sites {
		st.closeIdle()
	}
}
