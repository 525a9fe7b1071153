package lifecycle

import (
	"context"
	"fmt"
	"net"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel"
	"github.com/gateway-project/gateway/sqltunnel/browser"
)

// The SQL Server Browser responder (sql_browser.listen) announces the SQL
// listeners that have an instance name, with the ports they are bound to,
// so that clients can keep connecting to HOST\INSTANCE.

// browserInstances lists the instances of cfg's listeners at the ports ls
// are bound to.
func browserInstances(cfg []configs.SQLListener, ls []*sqltunnel.Listener) []browser.Instance {
	port := map[string]int{}
	for _, l := range ls {
		if a, ok := l.Addr().(*net.TCPAddr); ok {
			port[l.Name()] = a.Port
		}
	}
	var list []browser.Instance
	for _, lc := range cfg {
		if lc.Instance != "" && port[lc.Name] != 0 {
			list = append(list, browser.Instance{Name: lc.Instance, Port: port[lc.Name]})
		}
	}
	return list
}

// newBrowser builds and binds the responder of cfg (nil when
// sql_browser.listen is ""), announcing nothing yet.
func (g *Gateway) newBrowser(cfg configs.SQLBrowser) (*browser.Responder, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	r, err := browser.New(browser.Config{Listen: cfg.Listen}, g.logger, browser.WithMetrics(g.browserMetrics))
	if err == nil {
		err = r.Listen()
	}
	if err != nil {
		return nil, fmt.Errorf("sql_browser.listen: %w", err)
	}
	return r, nil
}

// serveBrowser runs r (nil: none) under its own context, so that a reload
// can replace it alone, after announcing the running listeners of sqlCfg.
func (g *Gateway) serveBrowser(r *browser.Responder, sqlCfg []configs.SQLListener) {
	if g.browserCancel != nil {
		g.browserCancel()
	}
	g.browser, g.browserCancel = r, nil
	if r == nil {
		return
	}
	g.announce(sqlCfg)
	ctx, cancel := context.WithCancel(g.serveCtx)
	g.browserCancel = cancel
	g.goServeCtx(ctx, "sql browser", r.Serve)
}

// announce tells the responder the instances of sqlCfg's running listeners.
func (g *Gateway) announce(sqlCfg []configs.SQLListener) {
	if g.browser == nil {
		return
	}
	if err := g.browser.SetInstances(browserInstances(sqlCfg, g.sql)); err != nil {
		// The configuration was validated; this would be a bug.
		g.logger.Error("sql browser: instances refused; announcing the previous ones", zap.Error(err))
	}
}
