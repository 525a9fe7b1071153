package lifecycle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// Options are what a gateway has beyond its configuration.
type Options struct {
	// Version and Commit are the build's, for gateway_build_info and the
	// status page.
	Version, Commit string
	// Load re-reads the configuration from where the running one came from,
	// for reloads; nil refuses reloads (gateway demo).
	Load func() (*configs.Loaded, error)
	// Level is the logger's level, which a reload of log.level changes;
	// nil keeps it.
	Level *zap.AtomicLevel
	// Notifier is told of start, reloads and the drain; nil means systemd's
	// notification socket (which does nothing when $NOTIFY_SOCKET is unset).
	Notifier Notifier
}

// Gateway is a started gateway: its certificate manager, fronts,
// operator endpoint and metrics. A reload (reload.go) replaces parts of it.
type Gateway struct {
	logger *zap.Logger
	opts   Options
	life   Notifier
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
func (g *Gateway) storeParts() {
	g.parts.Store(&gatewayParts{https: g.https, sql: g.sql, browser: g.browser, admin: g.admin})
}

// Start builds every part from cfg, binds the listeners, obtains the
// certificates and returns once the gateway is ready to serve. When ctx ends
// wait drains the gateway and returns.
func Start(ctx context.Context, cfg configs.Config, logger *zap.Logger, opts Options) (*Gateway, error) {
	certMetrics := tlsmgr.NewMetrics()
	g := &Gateway{
		logger:         logger,
		opts:           opts,
		life:           opts.Notifier,
		proxyMetrics:   proxy.NewMetrics(),
		sqlMetrics:     sqltunnel.NewMetrics(),
		browserMetrics: browser.NewMetrics(),
		startedAt:      time.Now(),
		process:        admin.NewProcess(opts.Version, opts.Commit, time.Now()),
		ctx:            ctx,
		cfg:            cfg,
		failed:         make(chan error, 1),
		adminDone:      make(chan struct{}),
	}
	if g.life == nil {
		g.life = Systemd{Log: logger}
	}
	runtimeFields := applyRuntime(cfg.Runtime)
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
	fail := func(err error) (*Gateway, error) {
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
	g.serveBrowser(sqlBrowser, cfg.SQL)
	g.serveAdmin(g.admin)
	g.storeParts()
	// Listeners serve before certificates are obtained: ACME challenges
	// arrive on them while Manage waits.
	if err := certs.Manage(ctx, cfg.Names()); err != nil {
		_ = g.Drain()
		return nil, fmt.Errorf("certificates: %w", err)
	}
	g.started.Store(true)
	fields := []zap.Field{zap.Strings("names", cfg.Names()), zap.Dict("runtime", runtimeFields...)}
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
	g.life.Ready(fmt.Sprintf("serving %d site(s) and %d sql listener(s)", len(cfg.HTTP.Sites), len(cfg.SQL)))
	return g, nil
}

// newHTTPS builds and binds the HTTPS front of cfg.
func (g *Gateway) newHTTPS(cfg configs.Config) (*proxy.Server, error) {
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
func (g *Gateway) setChallengeAddresses(srv *proxy.Server) error {
	redirect := ""
	if a := srv.RedirectAddr(); a != nil {
		redirect = a.String()
	}
	return g.certs.SetChallengeAddresses(redirect, srv.HTTPSAddr().String())
}

// newSQLListener builds (without binding) one TDS listener presenting the
// certificate for its hostname.
func (g *Gateway) newSQLListener(lc configs.SQLListener, drain time.Duration) (*sqltunnel.Listener, error) {
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
func (g *Gateway) newAdmin(addr string) *admin.Server {
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
func (g *Gateway) goServe(name string, serve func(context.Context) error) {
	g.goServeCtx(g.serveCtx, name, serve)
}

func (g *Gateway) goServeCtx(ctx context.Context, name string, serve func(context.Context) error) {
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
func (g *Gateway) serveHTTPS(srv *proxy.Server) {
	ctx, cancel := context.WithCancel(g.serveCtx)
	g.httpsCancel = cancel
	g.allHTTPS = append(g.allHTTPS, srv)
	g.goServeCtx(ctx, "https front", srv.Serve)
}

func (g *Gateway) serveSQL(l *sqltunnel.Listener) {
	g.allSQL = append(g.allSQL, l)
	g.goServe("sql listener "+l.Name(), l.Serve)
}

// serveAdmin runs the operator endpoint under its own context: it keeps
// answering (/readyz: 503 draining) until the drain is over.
func (g *Gateway) serveAdmin(a *admin.Server) {
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

// Wait blocks until the context Start was given ends or a part fails, then
// drains.
func (g *Gateway) Wait() error {
	var first error
	select {
	case <-g.ctx.Done():
	case first = <-g.failed:
		g.logger.Error("gateway part failed; stopping", zap.Error(first))
	}
	rest := g.Drain()
	if first != nil {
		return first
	}
	return rest
}

// drain makes readiness fail, lets every part finish its own bounded drain
// (HTTP requests and TDS sessions, up to drain_timeout), logs one summary
// line, then stops the operator endpoint and the certificate manager.
func (g *Gateway) Drain() error {
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
	g.life.Stopping(fmt.Sprintf("draining %d request(s) and %d sql session(s)", requests, sessions),
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

// Certs is the gateway's certificate manager.
func (g *Gateway) Certs() *tlsmgr.Manager { return g.certs }

// Addrs are the addresses a gateway is bound to; nil or empty for what it
// does not serve.
type Addrs struct {
	HTTPS, Redirect, Admin, Browser net.Addr
	// SQL maps each SQL listener's name to its address, in sql[] order in
	// SQLNames.
	SQL      map[string]string
	SQLNames []string
}

// Addrs returns where the gateway listens now.
func (g *Gateway) Addrs() Addrs {
	p := g.parts.Load()
	var a Addrs
	if p == nil {
		return a
	}
	if p.https != nil {
		a.HTTPS, a.Redirect = p.https.HTTPSAddr(), p.https.RedirectAddr()
	}
	if p.admin != nil {
		a.Admin = p.admin.Addr()
	}
	if p.browser != nil {
		a.Browser = p.browser.Addr()
	}
	a.SQL = sqlAddrs(p.sql)
	for _, l := range p.sql {
		a.SQLNames = append(a.SQLNames, l.Name())
	}
	return a
}
