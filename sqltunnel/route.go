package sqltunnel

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// routed is the login exchange's answer to a routing ENVCHANGE that
// upstream.routing: follow lets the gateway follow itself: Azure SQL's
// Redirect connection policy, and read-only routing to a readable
// secondary of an Always On availability group (ApplicationIntent=
// ReadOnly). It is not a failure: run follows it.
type routed struct {
	to tds.Routing
}

func (r *routed) Error() string { return "routed to " + routeAddr(r.to) }

func routeAddr(r tds.Routing) string {
	return net.JoinHostPort(r.Server, strconv.Itoa(int(r.Port)))
}

// route decides what a routing ENVCHANGE from upstream u leads to: a
// *routed the gateway follows, or a refusal (50906). A client that followed
// a route itself would connect to the routed server directly, around the
// gateway and its encryption policy, so the route never reaches the client.
//
// A login that took authentication round trips (SSPI, or FedAuth with
// FEDAUTHINFO) cannot be replayed: the client has answered the first
// server's challenge, and would not answer another.
func (s *session) route(u *upstream, rt tds.Routing, authRounds bool) error {
	up := s.l.cfg.Upstream
	to := routeAddr(rt)
	switch {
	case up.Routing != configs.RoutingFollow:
		return routingRefused(rt)
	case s.audit.routedTo != "":
		return routingRefusedBecause(rt, fmt.Sprintf("it is a second route (the login was already routed from %s to %s); the gateway follows one", up.Address, s.audit.routedTo))
	case strings.EqualFold(to, u.addr) || strings.EqualFold(to, up.Address):
		return routingRefusedBecause(rt, "it routes back to the server that sent it (a routing loop)")
	case authRounds:
		return routingRefusedBecause(rt, "the login took an SSPI or FedAuth round trip, which cannot be replayed to another server; use SQL logins or FedAuth access tokens with routing: follow")
	case strings.Contains(rt.Server, `\`):
		return routingRefusedBecause(rt, "it names an instance, which a route cannot carry")
	case rt.Protocol != 0 || rt.Port == 0:
		return routingRefusedBecause(rt, fmt.Sprintf("protocol %d port %d is not TCP with a port", rt.Protocol, rt.Port))
	case !configs.RoutingAllowed(rt.Server, up.RoutingAllow):
		return routingRefusedBecause(rt, fmt.Sprintf("%s is not in upstream.routing_allow; add it (or a *.domain pattern) to follow this route", rt.Server))
	}
	return &routed{to: rt}
}

// followRoute connects to the server r names, as to the configured
// upstream: the same encryption, the client's PRELOGIN (the one the
// configured upstream got), and a certificate verified for the routed name.
// The first upstream is closed. Errors are refusals.
func (s *session) followRoute(ctx context.Context, first *upstream, pl *tds.Prelogin, r *routed) (*upstream, error) {
	first.close()
	s.audit.routedTo = routeAddr(r.to)
	s.audit.routedDatabase = r.to.Database
	t, err := s.l.routes.forHost(r.to.Server)
	if err != nil {
		return nil, upstreamProtocol(s.audit.routedTo, "cannot be verified", err)
	}
	u := &upstream{
		s:      s,
		target: configs.UpstreamAddress{Host: r.to.Server, Port: int(r.to.Port)},
		addr:   s.audit.routedTo,
		tls:    t,
		mode:   first.mode,
		routed: true,
	}
	u.dial(ctx)
	u.prelogin(ctx, pl)
	if u.err == nil && s.audit.mars && (u.reply.MARS == nil || !*u.reply.MARS) {
		// The client was told MARS is on, from the first server's answer.
		u.err = upstreamProtocol(u.addr, "does not support MARS, which the server that routed the client to it does", nil)
	}
	u.secure(ctx)
	s.audit.upstream(u)
	if u.err != nil {
		return nil, u.err
	}
	return u, nil
}
