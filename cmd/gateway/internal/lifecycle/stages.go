package lifecycle

import (
	"fmt"
	"net"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/cmd/gateway/internal/admin"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel"
)

// A stage is one front's share of a reload. Its prepare (a Gateway
// method) builds and binds what the front needs under the next
// configuration without touching what serves, and fails if it cannot;
// commit puts it into effect and cannot fail; abort undoes a prepared
// stage when another front's prepare failed.
type stage interface {
	commit(next *configs.Config) []zap.Field
	abort()
}

// funcStage is a stage made of two functions; nil ones do nothing.
type funcStage struct {
	onCommit func(next *configs.Config) []zap.Field
	onAbort  func()
}

func (s funcStage) commit(next *configs.Config) []zap.Field {
	if s.onCommit == nil {
		return nil
	}
	return s.onCommit(next)
}

func (s funcStage) abort() {
	if s.onAbort != nil {
		s.onAbort()
	}
}

// prepareLevel changes the logger's level, when the gateway owns one.
func (g *Gateway) prepareLevel(next *configs.Config) (stage, error) {
	if g.opts.Level == nil {
		return funcStage{}, nil
	}
	lvl, err := zapcore.ParseLevel(string(next.Log.Level))
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	if lvl == g.opts.Level.Level() {
		return funcStage{}, nil
	}
	return funcStage{onCommit: func(next *configs.Config) []zap.Field {
		g.opts.Level.SetLevel(lvl)
		return []zap.Field{zap.String("log_level", string(next.Log.Level))}
	}}, nil
}

// prepareHTTPS stages the running front's new sites and addresses, builds
// and binds a front the reload enables, or marks the running one to stop.
func (g *Gateway) prepareHTTPS(next *configs.Config) (stage, error) {
	switch {
	case g.https != nil && next.HTTP.Listen != "":
		staged, err := g.https.Stage(next.HTTP)
		if err != nil {
			return nil, err
		}
		return funcStage{
			onCommit: func(next *configs.Config) []zap.Field {
				sum := staged.Commit()
				fields := []zap.Field{zap.Strings("sites_added", sum.SitesAdded), zap.Strings("sites_removed", sum.SitesRemoved),
					zap.Int("sites_kept", sum.SitesKept)}
				if sum.ListenChange {
					fields = append(fields, g.httpsMoved()...)
				}
				g.https.SetDrainTimeout(next.DrainTimeout)
				return fields
			},
			onAbort: staged.Abort,
		}, nil
	case g.https == nil && next.HTTP.Listen != "":
		srv, err := g.newHTTPS(*next)
		if err != nil {
			return nil, fmt.Errorf("https front: %w", err)
		}
		return funcStage{
			onCommit: func(*configs.Config) []zap.Field {
				g.https = srv
				fields := append(g.httpsMoved(), zap.String("https", "enabled"))
				g.serveHTTPS(srv)
				return fields
			},
			// It never served: closing its sockets is all there is to undo.
			onAbort: srv.Close,
		}, nil
	case g.https != nil:
		return funcStage{onCommit: func(*configs.Config) []zap.Field {
			// The front drains as at shutdown: in-flight requests get
			// drain_timeout to finish.
			g.httpsCancel()
			g.https, g.httpsCancel = nil, nil
			return []zap.Field{zap.String("https", "disabled")}
		}}, nil
	}
	return funcStage{}, nil
}

// httpsMoved tells the ACME issuer where the front now answers challenges
// and returns its addresses for the reload line.
func (g *Gateway) httpsMoved() []zap.Field {
	if err := g.setChallengeAddresses(g.https); err != nil {
		g.logger.Warn("updating ACME challenge addresses", zap.Error(err))
	}
	fields := []zap.Field{zap.Stringer("https_addr", g.https.HTTPSAddr())}
	if a := g.https.RedirectAddr(); a != nil {
		fields = append(fields, zap.Stringer("redirect_addr", a))
	}
	return fields
}

// prepareAdmin binds the operator endpoint's new address, if it changed.
func (g *Gateway) prepareAdmin(next *configs.Config) (stage, error) {
	if next.Admin.Listen == g.cfg.Admin.Listen {
		return funcStage{}, nil
	}
	var a *admin.Server
	if next.Admin.Listen != "" {
		a = g.newAdmin(next.Admin.Listen)
		if err := a.Listen(); err != nil {
			return nil, err
		}
	}
	return funcStage{
		onCommit: func(*configs.Config) []zap.Field {
			if g.adminCancel != nil {
				g.adminCancel()
				<-g.adminDone
			}
			g.admin, g.adminCancel, g.adminDone = nil, nil, make(chan struct{})
			g.serveAdmin(a)
			if a == nil {
				return []zap.Field{zap.String("admin_addr", "")}
			}
			return []zap.Field{zap.Stringer("admin_addr", a.Addr())}
		},
		onAbort: func() {
			if a != nil {
				a.Close()
			}
		},
	}, nil
}

// prepareBrowser binds the SQL Browser responder's new address, if it
// changed; its commit announces the listeners in force, whose ports a
// reload may have changed.
func (g *Gateway) prepareBrowser(next *configs.Config) (stage, error) {
	if next.SQLBrowser.Listen == g.cfg.SQLBrowser.Listen {
		return funcStage{onCommit: func(next *configs.Config) []zap.Field {
			g.announce(next.SQL)
			return nil
		}}, nil
	}
	r, err := g.newBrowser(next.SQLBrowser)
	if err != nil {
		return nil, err
	}
	return funcStage{
		onCommit: func(next *configs.Config) []zap.Field {
			g.serveBrowser(r, next.SQL)
			addr := ""
			if r != nil {
				addr = r.Addr().String()
			}
			return []zap.Field{zap.String("sql_browser_addr", addr)}
		},
		onAbort: func() {
			if r != nil {
				_ = r.Close()
			}
		},
	}, nil
}

// sqlPart is what planning a reload needs of a running SQL listener.
type sqlPart interface {
	Name() string
	Config() configs.SQLListener
	Addr() net.Addr
}

// sqlAction is what a reload does to one SQL listener.
type sqlAction int

const (
	sqlKeep    sqlAction = iota // same configuration: untouched
	sqlHandOff                  // changed, same address: the new one takes over the socket
	sqlReplace                  // changed and moved: the new one binds, the old retires
	sqlAdd                      // new name: bind and serve
	sqlRemove                   // name gone: retire
)

func (a sqlAction) String() string {
	return [...]string{"keep", "hand-off", "replace", "add", "remove"}[a]
}

// sqlStep is one listener's action: Next is its index in the next sql[]
// (-1 for a removal), Old its index among the running ones (-1 for an
// addition).
type sqlStep struct {
	Name      string
	Action    sqlAction
	Next, Old int
}

// planSQL matches the running listeners to the next configuration's by
// name: in next sql[] order, then the removals in running order.
func planSQL[P sqlPart](running []P, next []configs.SQLListener) []sqlStep {
	old := map[string]int{}
	for i, p := range running {
		old[p.Name()] = i
	}
	var steps []sqlStep
	for i, lc := range next {
		j, ok := old[lc.Name]
		delete(old, lc.Name)
		step := sqlStep{Name: lc.Name, Next: i, Old: j}
		switch {
		case !ok:
			step.Action, step.Old = sqlAdd, -1
		case running[j].Config().Equal(lc):
			step.Action = sqlKeep
		case sameAddress(running[j], lc.Listen):
			step.Action = sqlHandOff
		default:
			step.Action = sqlReplace
		}
		steps = append(steps, step)
	}
	for i, p := range running {
		if _, gone := old[p.Name()]; gone {
			steps = append(steps, sqlStep{Name: p.Name(), Action: sqlRemove, Next: -1, Old: i})
		}
	}
	return steps
}

// sameAddress reports whether listen names the address p listens on: the
// same text, or the address it is bound to (":0" in the running
// configuration written out as the port it got).
func sameAddress(p sqlPart, listen string) bool {
	if p.Config().Listen == listen {
		return true
	}
	a := p.Addr()
	return a != nil && a.String() == listen
}

// sqlStage is a prepared SQL reload: the plan, with the listeners built
// for it (bound, except hand-offs, which take the old socket at commit).
type sqlStage struct {
	g     *Gateway
	steps []sqlStep
	built map[int]*sqltunnel.Listener // by index in next sql[]
}

// prepareSQL plans the SQL listeners and builds the new ones.
func (g *Gateway) prepareSQL(next *configs.Config) (stage, error) {
	st := &sqlStage{g: g, steps: planSQL(g.sql, next.SQL), built: map[int]*sqltunnel.Listener{}}
	for _, step := range st.steps {
		if step.Action == sqlKeep || step.Action == sqlRemove {
			continue
		}
		lc := next.SQL[step.Next]
		l, err := g.newSQLListener(lc, next.DrainTimeout)
		if err == nil && step.Action != sqlHandOff {
			if err = l.Listen(); err != nil {
				err = fmt.Errorf("sql[%d].listen: %w", step.Next, err)
			}
		}
		if err != nil {
			st.abort()
			return nil, fmt.Errorf("sql[%d] (%s): %w", step.Next, lc.Name, err)
		}
		st.built[step.Next] = l
	}
	return st, nil
}

// abort closes the sockets of the listeners built for the reload; none
// served, and hand-offs have not taken their socket yet.
func (st *sqlStage) abort() {
	for _, step := range st.steps {
		if l := st.built[step.Next]; l != nil && step.Action != sqlHandOff {
			l.Retire(false)
		}
	}
}

func (st *sqlStage) commit(next *configs.Config) []zap.Field {
	g := st.g
	running := g.sql
	list := make([]*sqltunnel.Listener, len(next.SQL))
	var added, changed, removed []string
	kept := 0
	for _, step := range st.steps {
		l := st.built[step.Next]
		switch step.Action {
		case sqlKeep:
			kept++
			list[step.Next] = running[step.Old]
			running[step.Old].SetDrainTimeout(next.DrainTimeout)
			continue
		case sqlRemove:
			running[step.Old].Retire(false)
			removed = append(removed, step.Name)
			continue
		case sqlHandOff:
			var err error
			if ln := running[step.Old].Retire(true); ln != nil {
				err = l.Adopt(ln)
			} else {
				err = l.Listen()
			}
			if err != nil {
				g.logger.Error("sql listener could not take over its address; it is down until the next reload or restart",
					zap.String("listener", step.Name), zap.Error(err))
				continue
			}
			changed = append(changed, step.Name)
		case sqlReplace:
			running[step.Old].Retire(false)
			changed = append(changed, step.Name)
		case sqlAdd:
			added = append(added, step.Name)
		}
		g.serveSQL(l)
		list[step.Next] = l
	}
	g.sql = g.sql[:0:0]
	for _, l := range list {
		if l != nil {
			g.sql = append(g.sql, l)
		}
	}
	fields := []zap.Field{zap.Strings("sql_added", added), zap.Strings("sql_changed", changed),
		zap.Strings("sql_removed", removed), zap.Int("sql_kept", kept)}
	if len(g.sql) > 0 {
		fields = append(fields, zap.Any("sql_listeners", sqlAddrs(g.sql)))
	}
	return fields
}

// What planSQL and applyReload are given.
var (
	_ sqlPart = (*sqltunnel.Listener)(nil)
	_ stage   = (*sqlStage)(nil)
)
