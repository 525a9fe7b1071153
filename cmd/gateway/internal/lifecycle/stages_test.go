package lifecycle

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/gateway-project/gateway/configs"
)

// fakeSQL is a running SQL listener as planSQL sees it.
type fakeSQL struct {
	cfg   configs.SQLListener
	bound string
}

func (f fakeSQL) Name() string                { return f.cfg.Name }
func (f fakeSQL) Config() configs.SQLListener { return f.cfg }
func (f fakeSQL) Addr() net.Addr {
	a, err := net.ResolveTCPAddr("tcp", f.bound)
	if err != nil {
		panic(err)
	}
	return a
}

func sqlCfg(name, listen, upstream string) configs.SQLListener {
	return configs.SQLListener{Name: name, Listen: listen, Hostname: "sql.test",
		ClientEncryption: configs.ClientEncryptionRequired,
		Upstream:         configs.SQLUpstream{Address: upstream, Encryption: configs.UpstreamEncryptionRequired}}
}

// TestPlanSQL: each running listener is kept, handed off, replaced or
// removed, and each new name added, by name, whatever the order.
func TestPlanSQL(t *testing.T) {
	a := fakeSQL{sqlCfg("a", "127.0.0.1:1433", "10.0.0.1:1433"), "127.0.0.1:1433"}
	b := fakeSQL{sqlCfg("b", "127.0.0.1:0", "10.0.0.2:1433"), "127.0.0.1:40001"}
	running := []fakeSQL{a, b}
	changed := func(l configs.SQLListener, mutate func(*configs.SQLListener)) configs.SQLListener {
		mutate(&l)
		return l
	}
	upstream := func(l *configs.SQLListener) { l.Upstream.Address = "10.0.0.9:1433" }
	tests := []struct {
		name string
		next []configs.SQLListener
		want []string // "name:action"
	}{
		{"unchanged", []configs.SQLListener{a.cfg, b.cfg}, []string{"a:keep", "b:keep"}},
		{"reordered", []configs.SQLListener{b.cfg, a.cfg}, []string{"b:keep", "a:keep"}},
		{"changed on the same address", []configs.SQLListener{changed(a.cfg, upstream), b.cfg},
			[]string{"a:hand-off", "b:keep"}},
		{"port 0 written as the port it got", []configs.SQLListener{a.cfg,
			changed(b.cfg, func(l *configs.SQLListener) { l.Listen = "127.0.0.1:40001"; upstream(l) })},
			[]string{"a:keep", "b:hand-off"}},
		{"port 0 kept as port 0", []configs.SQLListener{a.cfg, changed(b.cfg, upstream)},
			[]string{"a:keep", "b:hand-off"}},
		{"moved", []configs.SQLListener{changed(a.cfg, func(l *configs.SQLListener) { l.Listen = "127.0.0.1:1444" }), b.cfg},
			[]string{"a:replace", "b:keep"}},
		{"moved and changed", []configs.SQLListener{
			changed(a.cfg, func(l *configs.SQLListener) { l.Listen = "127.0.0.1:1444"; upstream(l) }), b.cfg},
			[]string{"a:replace", "b:keep"}},
		{"added", []configs.SQLListener{a.cfg, b.cfg, sqlCfg("c", "127.0.0.1:1435", "10.0.0.3:1433")},
			[]string{"a:keep", "b:keep", "c:add"}},
		{"removed", []configs.SQLListener{b.cfg}, []string{"b:keep", "a:remove"}},
		{"all removed", nil, []string{"a:remove", "b:remove"}},
		{"renamed: one removed, one added on its address", []configs.SQLListener{
			changed(a.cfg, func(l *configs.SQLListener) { l.Name = "a2" }), b.cfg},
			[]string{"a2:add", "b:keep", "a:remove"}},
		{"everything at once", []configs.SQLListener{sqlCfg("c", "127.0.0.1:1435", "10.0.0.3:1433"), changed(b.cfg, upstream)},
			[]string{"c:add", "b:hand-off", "a:remove"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := planSQL(running, tt.next)
			var got []string
			for _, s := range steps {
				got = append(got, fmt.Sprintf("%s:%s", s.Name, s.Action))
				switch {
				case s.Action == sqlAdd && s.Old != -1, s.Action == sqlRemove && s.Next != -1:
					t.Errorf("%s %s: Old %d Next %d", s.Name, s.Action, s.Old, s.Next)
				case s.Action != sqlAdd && running[s.Old].Name() != s.Name:
					t.Errorf("%s: Old %d is %s", s.Name, s.Old, running[s.Old].Name())
				case s.Action != sqlRemove && tt.next[s.Next].Name != s.Name:
					t.Errorf("%s: Next %d is %s", s.Name, s.Next, tt.next[s.Next].Name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("plan = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestProblemsOf: a refused reload's log line lists each problem with its key.
func TestProblemsOf(t *testing.T) {
	ve := &configs.ValidationError{Problems: []configs.Problem{{Key: "sql[0].listen", Message: "missing"}, {Key: "tls.issuer", Message: "changed"}}}
	if got := problemsOf(ve); !slices.Equal(got, []string{"sql[0].listen: missing", "tls.issuer: changed"}) {
		t.Errorf("problemsOf(ValidationError) = %q", got)
	}
	if got := problemsOf(fmt.Errorf("a\nb")); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("problemsOf(joined) = %q", got)
	}
}
