package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/admin"
	"github.com/gateway-project/gateway/cmd/gateway/internal/proxyhdr"
	"github.com/gateway-project/gateway/cmd/gateway/internal/status"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/proxy"
	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/tlsmgr"
	"github.com/gateway-project/gateway/tlsmgr/redisstore"
)

func newRunCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve (the default command)",
		Long: "run serves until SIGTERM or SIGINT, then drains (drain_timeout) and exits 0.\n" +
			"SIGHUP re-reads the configuration from the same file, environment and flags\n" +
			"and applies it without dropping a connection; an invalid one is refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger, level, err := newLevelLogger(loaded.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { _ = logger.Sync() }()
			source := loaded.Source
			if source == "" {
				source = "built-in defaults"
			}
			logger.Info("starting gateway", zap.String("version", version), zap.String("config", source))
			// Catch SIGHUP before anything is ready: a SIGHUP that arrives
			// while starting is held and applied once the gateway is up,
			// instead of killing the process (its default action).
			hup := notifyHangup()
			g, err := startGateway(cmd.Context(), loaded.Config, logger, gatewayOptions{
				load:  func() (*configs.Loaded, error) { return loadConfig(cmd) },
				level: &level,
			})
			if err != nil {
				signal.Stop(hup)
				return err
			}
			stopHUP := watchHangup(cmd.Context(), logger, hup, g.reload)
			defer stopHUP()
			return g.wait()
		},
	}
	addConfigFlags(cmd)
	return cmd
}

// gatewayOptions are what a gateway started by `gateway run` has beyond its
// configuration; the zero value (gateway demo) cannot reload.
type gatewayOptions struct {
	// load re-reads the configuration from where the running one came
	// from, for SIGHUP; nil refuses reloads.
	load func() (*configs.Loaded, error)
	// level is the logger's level, which a reload of log.level changes;
	// nil keeps it.
	level *zap.AtomicLevel
}

// runningGateway is a started gateway: its certificate manager, fronts,
// operator endpoint and metrics. A reload (reload.go) replaces parts of it.
type runningGateway struct {
	logger *zap.Logger
	opts   gatewayOptions
	life   lifecycle
	certs  *tlsmgr.Manager

	startedAt      time.Time
	history        *status.History
	proxyMetrics   *proxy.Metrics
	sqlMetrics     *sqltunnel.Metrics
	browserMetrics *browser.Metrics
	store          *redisstore.Store // a redis:// storage; nil for a directory
	process        *admin.Process
	registry       *prometheus.Registry

	// Parts serve under serveCtx; cancel starts their drain.
	serveCtx context.Context
	cancel   context.CancelFunc
	ctx      context.Context // the caller's: its end (SIGTERM, SIGINT) drains
	wg       sync.WaitGroup
	failed   chan error // the first part that failed for good

	// reloadMu serialises reloads and the drain; it guards the fields below.
	reloadMu    sync.Mutex
	cfg         configs.Config
	https       *proxy.Server // nil when http.listen is ""
	httpsCancel context.CancelFunc
	sql         []*sqltunnel.Listener // in sql[] order
	allHTTPS    []*proxy.Server       // every front started, for the drain summary
	allSQL      []*sqltunnel.Listener // every listener started, retired ones too
	admin       *admin.Server
	adminCancel context.CancelFunc
	adminDone   chan struct{}
	// browser answers SQL Browser requests; nil when sql_browser.listen is "".
	browser       *browser.Responder
	browserCancel context.CancelFunc

	parts    atomic.Pointer[gatewayParts] // what readiness looks at
	started  atomic.Bool
	draining atomic.Bool
}

// gatewayParts is a snapshot of the serving parts, swapped by reloads,
// for readiness and the status page, which must never wait for a reload.
type gatewayParts struct {
	https   *proxy.Server
	sql     []*sqltunnel.Listener
	browser *browser.Responder
	admin   *admin.Server
}

// storeParts publishes the parts in force; reloadMu or start-up.
func (g *runningGateway) storeParts() {
	g.parts.Store(&gatewayParts{https: g.https, sql: g.sql, browser: g.browser, admin: g.admin})
}

// startGateway builds every part from cfg, binds the listeners, obtains the
// certificates and returns once the gateway is ready to serve. When ctx ends
// wait drains the gateway and returns.
func startGateway(ctx context.Context, cfg configs.Config, logger *zap.Logger, opts gatewayOptions) (*runningGateway, error) {
	certMetrics := tlsmgr.NewMetrics()
	g := &runningGateway{
		logger:         logger,
		opts:           opts,
		life:           lifecycleFrom(ctx, logger),
		proxyMetrics:   proxy.NewMetrics(),
		sqlMetrics:     sqltunnel.NewMetrics(),
		browserMetrics: browser.NewMetrics(),
		startedAt:      time.Now(),
		process:        admin.NewProcess(version, vcsCommit(), time.Now()),
		ctx:            ctx,
		cfg:            cfg,
		failed:         make(chan error, 1),
		adminDone:      make(chan struct{}),
	}
	// A redis:// storage is opened (and its key checked) before anything
	// else: the CA, the certificates and the sticky key live there.
	store, err := openStorage(ctx, &cfg, logger)
	if err != nil {
		return nil, err
	}
	g.store = store
	reg, err := admin.NewRegistry(g.process, g.proxyMetrics, g.sqlMetrics, g.browserMetrics, certMetrics, storageUpGauge(store))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	g.registry = reg
	g.history = status.NewHistory(reg, 0)
	g.process.SetReady(g.readiness)
	certs, err := tlsmgr.New(cfg.TLS, cfg.Storage, logger, tlsmgr.WithMetrics(certMetrics), tlsmgr.WithStorage(certStorage(store)))
	if err != nil {
		g.closeStore()
		return nil, fmt.Errorf("certificates: %w", err)
	}
	g.certs = certs
	// The parts' context outlives ctx: wait cancels it once readiness says
	// "draining", so that probes see the drain before listeners close.
	g.serveCtx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) (*runningGateway, error) {
		g.cancel()
		certs.Close()
		g.closeStore()
		return nil, err
	}
	if cfg.HTTP.Listen != "" {
		if g.https, err = g.newHTTPS(cfg); err == nil {
			err = g.setChallengeAddresses(g.https)
		}
		if err != nil {
			return fail(fmt.Errorf("https front: %w", err))
		}
	}
	for _, lc := range cfg.SQL {
		l, err := g.newSQLListener(lc, cfg.DrainTimeout)
		if err == nil {
			err = l.Listen()
		}
		if err != nil {
			return fail(fmt.Errorf("sql listener %s: %w", lc.Name, err))
		}
		g.sql = append(g.sql, l)
	}
	sqlBrowser, err := g.newBrowser(cfg.SQLBrowser)
	if err != nil {
		return fail(err)
	}
	if cfg.Admin.Listen != "" {
		g.admin = g.newAdmin(cfg.Admin.Listen)
		if err := g.admin.Listen(); err != nil {
			return fail(err)
		}
	}

	g.goServe("certificates", certs.Run)
	g.goServe("status history", g.history.Run)
	if store != nil {
		g.goServe("storage health", watchStorage(store))
	}
	if g.https != nil {
		g.serveHTTPS(g.https)
	}
	for _, l := range g.sql {
		g.serveSQL(l)
	}
	g.serveBrowser(sqlBrowser)
	g.serveAdmin(g.admin)
	g.storeParts()
	// Listeners serve before certificates are obtained: ACME challenges
	// arrive on them while Manage waits.
	if err := certs.Manage(ctx, cfg.Names()); err != nil {
		_ = g.drain()
		return nil, fmt.Errorf("certificates: %w", err)
	}
	g.started.Store(true)
	fields := []zap.Field{zap.Strings("names", cfg.Names())}
	if g.https != nil {
		fields = append(fields, zap.Stringer("https_addr", g.https.HTTPSAddr()))
		if a := g.https.RedirectAddr(); a != nil {
			fields = append(fields, zap.Stringer("redirect_addr", a))
		}
	}
	for _, l := range g.sql {
		fields = append(fields, zap.Stringer("sql_addr", l.Addr()))
	}
	if len(g.sql) > 0 {
		fields = append(fields, zap.Any("sql_listeners", sqlAddrs(g.sql)))
	}
	if g.browser != nil {
		fields = append(fields, zap.Stringer("sql_browser_addr", g.browser.Addr()))
	}
	if g.admin != nil {
		fields = append(fields, zap.Stringer("admin_addr", g.admin.Addr()))
	}
	logger.Info("gateway ready", fields...)
	g.life.ready(fmt.Sprintf("serving %d site(s) and %d sql listener(s)", len(cfg.HTTP.Sites), len(cfg.SQL)))
	return g, nil
}

// newHTTPS builds and binds the HTTPS front of cfg.
func (g *runningGateway) newHTTPS(cfg configs.Config) (*proxy.Server, error) {
	tlsConf := g.certs.ServerTLSConfig(cfg.DefaultServerName(), "h2", "http/1.1")
	wrap, err := proxyhdr.Wrapper(cfg.HTTP.ProxyProtocol, "https", g.logger)
	if err != nil {
		return nil, err
	}
	opts := []proxy.Option{
		proxy.WithDrainTimeout(cfg.DrainTimeout),
		proxy.WithChallengeHandler(g.certs.HTTPChallengeHandler),
		proxy.WithMetrics(g.proxyMetrics),
		proxy.WithListenerWrapper(wrap),
	}
	if g.store != nil {
		// A cluster: every gateway reads the same sticky key and names.
		opts = append(opts, proxy.WithSharedStore(g.store))
	} else {
		opts = append(opts, proxy.WithStickyKeyFile(filepath.Join(cfg.Storage, "sticky.key")),
			proxy.WithHTTP1OnlyFile(filepath.Join(cfg.Storage, "http1-only.json")))
	}
	srv, err := proxy.New(cfg.HTTP, tlsConf, g.logger, opts...)
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// setChallengeAddresses tells the ACME issuer where srv answers challenges.
func (g *runningGateway) setChallengeAddresses(srv *proxy.Server) error {
	redirect := ""
	if a := srv.RedirectAddr(); a != nil {
		redirect = a.String()
	}
	return g.certs.SetChallengeAddresses(redirect, srv.HTTPSAddr().String())
}

// newSQLListener builds (without binding) one TDS listener presenting the
// certificate for its hostname.
func (g *runningGateway) newSQLListener(lc configs.SQLListener, drain time.Duration) (*sqltunnel.Listener, error) {
	certs := g.certs
	serverTLS := func(protos ...string) *tls.Config {
		return certs.NamedServerTLSConfig(lc.Hostname, protos...)
	}
	wrap, err := proxyhdr.Wrapper(lc.ProxyProtocol, lc.Name, g.logger)
	if err != nil {
		return nil, err
	}
	return sqltunnel.New(lc, serverTLS, g.logger,
		sqltunnel.WithListenerWrapper(wrap),
		sqltunnel.WithDrainTimeout(drain),
		sqltunnel.WithMaxConns(lc.MaxConns()),
		sqltunnel.WithMetrics(g.sqlMetrics))
}

// newAdmin builds (without binding) the operator endpoint on addr.
func (g *runningGateway) newAdmin(addr string) *admin.Server {
	return admin.New(addr, admin.Options{
		Gatherer: g.registry,
		Ready:    g.readiness,
		Certs:    g.certReport,
		Status: func(since time.Duration) (status.Snapshot, error) {
			return status.Build(statusSource{g}, g.history, since)
		},
		Logger: g.logger,
	})
}

// goServe runs one part until serveCtx ends; the first part that fails for
// good stops the gateway (wait).
func (g *runningGateway) goServe(name string, serve func(context.Context) error) {
	g.goServeCtx(g.serveCtx, name, serve)
}

func (g *runningGateway) goServeCtx(ctx context.Context, name string, serve func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := serve(ctx); err != nil && !errors.Is(err, context.Canceled) {
			select {
			case g.failed <- fmt.Errorf("%s: %w", name, err):
			default:
			}
		}
	}()
}

// serveHTTPS runs an HTTPS front under its own context, so that a reload
// that empties http.listen can stop it alone.
func (g *runningGateway) serveHTTPS(srv *proxy.Server) {
	ctx, cancel := context.WithCancel(g.serveCtx)
	g.httpsCancel = cancel
	g.allHTTPS = append(g.allHTTPS, srv)
	g.goServeCtx(ctx, "https front", srv.Serve)
}

func (g *runningGateway) serveSQL(l *sqltunnel.Listener) {
	g.allSQL = append(g.allSQL, l)
	g.goServe("sql listener "+l.Name(), l.Serve)
}

// serveAdmin runs the operator endpoint under its own context: it keeps
// answering (/readyz: 503 draining) until the drain is over.
func (g *runningGateway) serveAdmin(a *admin.Server) {
	if a == nil {
		close(g.adminDone)
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(g.ctx))
	done := make(chan struct{})
	g.admin, g.adminCancel, g.adminDone = a, cancel, done
	go func() {
		defer close(done)
		if err := a.Serve(ctx); err != nil {
			select {
			case g.failed <- fmt.Errorf("admin endpoint: %w", err):
			default:
			}
		}
	}()
}

// httpsAddr is the bound HTTPS address, or nil when the front is disabled.
func (g *runningGateway) httpsAddr() net.Addr {
	if g.https == nil {
		return nil
	}
	return g.https.HTTPSAddr()
}

// wait blocks until ctx ends or a part fails, then drains.
func (g *runningGateway) wait() error {
	var first error
	select {
	case <-g.ctx.Done():
	case first = <-g.failed:
		g.logger.Error("gateway part failed; stopping", zap.Error(first))
	}
	rest := g.drain()
	if first != nil {
		return first
	}
	return rest
}

// drain makes readiness fail, lets every part finish its own bounded drain
// (HTTP requests and TDS sessions, up to drain_timeout), logs one summary
// line, then stops the operator endpoint and the certificate manager.
func (g *runningGateway) drain() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.draining.Store(true)
	var requests int
	var sessions int64
	for _, s := range g.allHTTPS {
		requests += s.InFlight()
	}
	for _, l := range g.allSQL {
		sessions += l.Sessions()
	}
	// The parts' drains end by drain_timeout, plus the grace after a cut.
	g.life.stopping(fmt.Sprintf("draining %d request(s) and %d sql session(s)", requests, sessions),
		g.cfg.DrainTimeout+10*time.Second)
	g.logger.Info("draining", zap.Int("requests_in_flight", requests), zap.Int64("sql_sessions", sessions),
		zap.Duration("drain_timeout", g.cfg.DrainTimeout))
	start := time.Now()
	g.cancel()
	g.wg.Wait()

	cut, closed := 0, 0
	for _, s := range g.allHTTPS {
		cut += s.CutAtDrain()
	}
	for _, l := range g.allSQL {
		closed += l.ClosedAtDrain()
	}
	fields := []zap.Field{
		zap.Duration("drain_duration", time.Since(start)),
		zap.Int("requests_in_flight_at_start", requests),
		zap.Int64("sql_sessions_at_start", sessions),
		zap.Int("requests_cut", cut),
		zap.Int("sql_sessions_closed", closed),
	}
	if cut+closed > 0 {
		g.logger.Warn("gateway stopped; drain timeout cut connections", fields...)
	} else {
		g.logger.Info("gateway stopped", fields...)
	}
	if g.adminCancel != nil {
		g.adminCancel()
	}
	<-g.adminDone
	g.certs.Close()
	g.closeStore()
	var err error
	select {
	case err = <-g.failed:
	default:
	}
	return err
}

// sqlAddrs maps each listener's name to its bound address.
func sqlAddrs(ls []*sqltunnel.Listener) map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		if a := l.Addr(); a != nil {
			m[l.Name()] = a.String()
		}
	}
	return m
}
