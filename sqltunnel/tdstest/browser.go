package tdstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/browser"
)

// Browser is a SQL Server Browser for tests: a browser.Responder answering
// for test servers (Announce) or any TDS listener (SetInstances), so that
// clients can connect to HOST\INSTANCE. Clients always ask UDP port 1434 of
// the host they connect to, so a test gives each Browser a loopback address
// of its own and listens for TDS on that same address (Host, port 0).
type Browser struct {
	r      *browser.Responder
	host   string
	cancel context.CancelFunc
	done   chan error
}

// loopbackHosts are where NewBrowser looks for a free UDP port 1434:
// 127.0.0.2 to 127.0.3.254 (any 127.0.0.0/8 address is local on Linux
// without configuration).
const loopbackHosts = 4 * 253

func loopbackHost(i int) string {
	return fmt.Sprintf("127.0.%d.%d", i/253, 2+i%253)
}

// NewBrowser starts a SQL Server Browser on addr (UDP host:port) that
// answers for no instance until Announce or SetInstances; opts are the
// responder's (rate limit, metrics). addr "" means port 1434 of the first
// loopback address where that port is free, from a random starting point
// among 127.0.0.2 to 127.0.3.254 so that tests running at the same time
// (other packages, other checkouts) rarely meet; binding is what reserves
// the address. Close it when done.
func NewBrowser(addr string, logger *zap.Logger, opts ...browser.Option) (*Browser, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	var (
		r   *browser.Responder
		err error
	)
	if addr != "" {
		r, err = listenBrowser(addr, logger, opts)
	} else {
		start := rand.IntN(loopbackHosts)
		for i := range loopbackHosts {
			addr = net.JoinHostPort(loopbackHost((start+i)%loopbackHosts), strconv.Itoa(browser.Port))
			if r, err = listenBrowser(addr, logger, opts); !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tdstest: sql browser: %w", err)
	}
	host, _, _ := net.SplitHostPort(r.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	b := &Browser{r: r, host: host, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- r.Serve(ctx) }()
	return b, nil
}

func listenBrowser(addr string, logger *zap.Logger, opts []browser.Option) (*browser.Responder, error) {
	r, err := browser.New(browser.Config{Listen: addr, ServerName: "TDSTEST"}, logger.Named("tdstest"), opts...)
	if err != nil {
		return nil, err
	}
	if err := r.Listen(); err != nil {
		return nil, err
	}
	return r, nil
}

// Host is the Browser's IP address: clients connect to Host\INSTANCE, and
// the TDS listeners it announces must listen on Host too.
func (b *Browser) Host() string { return b.host }

// Addr is the Browser's UDP address, host:port.
func (b *Browser) Addr() string { return b.r.Addr().String() }

// Announce makes the Browser answer for each server's Config.Instance with
// the server's port, replacing what it announced before. Servers without
// an instance name are an error.
func (b *Browser) Announce(servers ...*Server) error {
	list := make([]browser.Instance, 0, len(servers))
	for _, s := range servers {
		if s.cfg.Instance == "" {
			return fmt.Errorf("tdstest: server %s has no Config.Instance to announce", s.Addr())
		}
		list = append(list, browser.Instance{Name: s.cfg.Instance, Port: s.Port()})
	}
	return b.SetInstances(list...)
}

// SetInstances makes the Browser answer for these instances (a gateway's
// listeners, for example), replacing what it announced before.
func (b *Browser) SetInstances(list ...browser.Instance) error {
	return b.r.SetInstances(list)
}

// Close stops the Browser and releases its address. It is safe to call
// more than once.
func (b *Browser) Close() error {
	b.cancel()
	err, ok := <-b.done
	if ok {
		close(b.done)
	}
	return err
}
