package sqltunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/gateway-project/gateway/configs"
)

// Resolver finds the addresses of a host name. *net.Resolver implements it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// InstanceResolver finds the TCP port of a named SQL Server instance, as
// the host's SQL Browser (UDP 1434) announces it; *browser.Cache implements
// it. Implementations may cache answers; Invalidate drops a cached answer
// after a dial to its port failed, so that an instance restarted on another
// port is found again.
type InstanceResolver interface {
	LookupPort(ctx context.Context, host, instance string) (int, error)
	Invalidate(host, instance string)
}

// dialUpstream connects to a, within ctx (the dial timeout covers the
// whole attempt: Browser lookup, name resolution and TCP connect).
func (l *Listener) dialUpstream(ctx context.Context, a configs.UpstreamAddress) (net.Conn, error) {
	port := a.Port
	if a.Instance != "" {
		p, err := l.opts.instances.LookupPort(ctx, a.Host, a.Instance)
		if err != nil {
			return nil, fmt.Errorf("asking the SQL Browser of %s for instance %s: %w", a.Host, a.Instance, err)
		}
		port = p
	}
	c, err := l.dialHost(ctx, a.Host, port)
	if err != nil && a.Instance != "" {
		l.opts.instances.Invalidate(a.Host, a.Instance)
	}
	return c, err
}

// dialHost connects to port on host. A host name that resolves to several
// addresses (an Always On listener spanning subnets, whose offline
// subnets do not answer) is dialled on all of them at once and the first
// connection wins, as drivers do with MultiSubnetFailover=True; the others
// are cancelled, or closed if they connect too.
func (l *Listener) dialHost(ctx context.Context, host string, port int) (net.Conn, error) {
	p := strconv.Itoa(port)
	if net.ParseIP(host) != nil {
		return l.opts.dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, p))
	}
	addrs, err := l.opts.resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 1 {
		return l.opts.dialer.DialContext(ctx, "tcp", net.JoinHostPort(addrs[0], p))
	}
	return dialParallel(ctx, l.opts.dialer, addrs, p)
}

// dialParallel dials every address at once and returns the first
// connection; when all fail, it returns their errors joined.
func dialParallel(ctx context.Context, d Dialer, addrs []string, port string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	results := make(chan result, len(addrs))
	for _, a := range addrs {
		go func() {
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a, port))
			results <- result{c, err}
		}()
	}
	var errs []error
	for left := len(addrs); left > 0; left-- {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		// The losers are cancelled by the deferred cancel; any that
		// connected before seeing it are closed as they report.
		go func(n int) {
			for range n {
				if r := <-results; r.c != nil {
					_ = r.c.Close()
				}
			}
		}(left - 1)
		return r.c, nil
	}
	return nil, errors.Join(errs...)
}
