package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/proxy"
	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/tlsmgr"
)

func newRunCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve (the default command)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger, err := newLogger(loaded.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { _ = logger.Sync() }()
			source := loaded.Source
			if source == "" {
				source = "built-in defaults"
			}
			logger.Info("starting gateway", zap.String("version", version), zap.String("config", source))
			g, err := startGateway(cmd.Context(), loaded.Config, logger)
			if err != nil {
				return err
			}
			stopHUP := watchHangup(logger, g.certs.Reload)
			defer stopHUP()
			return g.wait()
		},
	}
	addConfigFlags(cmd)
	return cmd
}

// runningGateway is a started gateway: its certificate manager and fronts.
type runningGateway struct {
	logger *zap.Logger
	certs  *tlsmgr.Manager
	https  *proxy.Server
	sql    []*sqltunnel.Listener
	cancel context.CancelFunc
	errs   chan error
	jobs   int
}

// startGateway builds every part from cfg, binds the listeners, obtains the
// certificates and returns once the gateway is ready to serve. When ctx ends
// the gateway drains and wait returns.
func startGateway(ctx context.Context, cfg configs.Config, logger *zap.Logger) (*runningGateway, error) {
	certs, err := tlsmgr.New(cfg.TLS, cfg.Storage, logger)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	serveCtx, cancel := context.WithCancel(ctx)
	g := &runningGateway{logger: logger, certs: certs, cancel: cancel, errs: make(chan error, 4)}
	if cfg.HTTP.Listen != "" {
		tlsConf := certs.ServerTLSConfig(cfg.DefaultServerName(), "h2", "http/1.1")
		g.https, err = proxy.New(cfg.HTTP, tlsConf, logger,
			proxy.WithDrainTimeout(cfg.DrainTimeout),
			proxy.WithChallengeHandler(certs.HTTPChallengeHandler),
			proxy.WithStickyKeyFile(filepath.Join(cfg.Storage, "sticky.key")))
		if err == nil {
			err = g.https.Listen()
		}
		if err == nil {
			redirect := ""
			if a := g.https.RedirectAddr(); a != nil {
				redirect = a.String()
			}
			err = certs.SetChallengeAddresses(redirect, g.https.HTTPSAddr().String())
		}
		if err != nil {
			cancel()
			certs.Close()
			return nil, fmt.Errorf("https front: %w", err)
		}
	}
	for _, lc := range cfg.SQL {
		l, err := newSQLListener(lc, certs, cfg.DrainTimeout, logger)
		if err != nil {
			cancel()
			certs.Close()
			return nil, err
		}
		g.sql = append(g.sql, l)
	}
	g.goServe(func() error { return certs.Run(serveCtx) })
	if g.https != nil {
		g.goServe(func() error { return g.https.Serve(serveCtx) })
	}
	for _, l := range g.sql {
		g.goServe(func() error { return l.Serve(serveCtx) })
	}
	// Listeners serve before certificates are obtained: ACME challenges
	// arrive on them while Manage waits.
	if err := certs.Manage(ctx, cfg.Names()); err != nil {
		cancel()
		_ = g.drain()
		return nil, fmt.Errorf("certificates: %w", err)
	}
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
	logger.Info("gateway ready", fields...)
	return g, nil
}

// newSQLListener builds and binds one TDS listener presenting the
// certificate for its hostname.
func newSQLListener(lc configs.SQLListener, certs *tlsmgr.Manager, drain time.Duration, logger *zap.Logger) (*sqltunnel.Listener, error) {
	l, err := sqltunnel.New(lc,
		sqltunnel.WithLogger(logger),
		sqltunnel.WithDrainTimeout(drain),
		sqltunnel.WithServerTLS(func(protos ...string) *tls.Config {
			return certs.NamedServerTLSConfig(lc.Hostname, protos...)
		}))
	if err == nil {
		err = l.Listen()
	}
	if err != nil {
		return nil, fmt.Errorf("sql listener %s: %w", lc.Name, err)
	}
	return l, nil
}

func (g *runningGateway) goServe(fn func() error) {
	g.jobs++
	go func() { g.errs <- fn() }()
}

// httpsAddr is the bound HTTPS address, or nil when the front is disabled.
func (g *runningGateway) httpsAddr() net.Addr {
	if g.https == nil {
		return nil
	}
	return g.https.HTTPSAddr()
}

// wait blocks until the serving context ends or a part fails, then drains.
func (g *runningGateway) wait() error {
	first := <-g.errs
	g.jobs--
	g.cancel()
	rest := g.drain()
	if first != nil && !errors.Is(first, context.Canceled) {
		return first
	}
	g.logger.Info("gateway stopped")
	return rest
}

// drain waits for every serving goroutine to return after cancel.
func (g *runningGateway) drain() error {
	var errs []error
	for ; g.jobs > 0; g.jobs-- {
		if err := <-g.errs; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	g.certs.Close()
	return errors.Join(errs...)
}

// watchHangup keeps SIGHUP from terminating the process (its default action)
// and re-reads the operator certificates on it. Re-reading the configuration
// itself is not implemented yet.
func watchHangup(logger *zap.Logger, reloadCerts func(context.Context) error) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				logger.Info("sighup received: reloading operator certificates")
				if err := reloadCerts(context.Background()); err != nil {
					logger.Error("certificate reload failed; previous certificates kept", zap.Error(err))
				}
				logger.Warn("configuration reload on sighup is not implemented yet; restart to apply config changes")
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
