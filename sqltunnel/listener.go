package sqltunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/browser"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
	"github.com/gateway-project/gateway/tlsmgr"
)

// alpnTDS8 is the ALPN protocol of TDS 8 (MS-TDS 1.3.2 / 2.1).
const alpnTDS8 = "tds/8.0"

// Listener is one TDS listener in front of one SQL Server (configs.SQLListener).
// Create it with New, bind it with Listen (or let Serve do it) and run it with
// Serve. Its methods are safe for concurrent use.
type Listener struct {
	cfg  configs.SQLListener
	opts options
	log  *zap.Logger

	tds7TLS    *tls.Config // TLS inside PRELOGIN; tdstls limits it to TLS 1.2
	tds8TLS    *tls.Config // TLS first, ALPN tds/8.0
	upAddr     configs.UpstreamAddress
	upTLS      upstreamTLS // toward the upstream; zero for disabled_loopback
	verifyMode string      // ca | pin | ca+pin | system | insecure | none
	routes     *routeTLS   // toward servers the upstream routes to (routing: follow)

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	wg       sync.WaitGroup // one per session goroutine
	serving  bool           // Serve has started
	handOff  bool           // Retire(true) took the socket: Serve must not close it
	closed   int            // sessions the last drain closed

	acceptDone chan struct{} // closed when the accept loop has returned

	nextID atomic.Uint64
	active atomic.Int64

	retired      atomic.Bool  // Retire was called: no more accepting
	upstreamDown atomic.Bool  // the last upstream dial failed
	drainTimeout atomic.Int64 // time.Duration; see SetDrainTimeout

	// bytesUp and bytesDown count relayed bytes in Metrics; nil without.
	bytesUp, bytesDown prometheus.Counter
}

// New checks cfg and builds a Listener; nothing is bound until Listen.
// serverTLS supplies the client-facing TLS configurations and is required.
// The listener logs under the name "sqltunnel" with the field "listener",
// each connection adding "remote" and "conn_id"; a nil logger logs nothing.
// The upstream TLS configuration defaults to
// tlsmgr.ClientTLSConfig(cfg.Upstream.TLS(), logger), whose errors (an
// unreadable ca_file, a bad pin) are returned here.
func New(cfg configs.SQLListener, serverTLS ServerTLS, logger *zap.Logger, opts ...Option) (*Listener, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if o.instances == nil {
		o.instances = browser.NewCache(nil, 0)
	}
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if serverTLS == nil {
		return nil, fmt.Errorf("sqltunnel: listener %s: no server TLS configuration", cfg.Name)
	}
	l := &Listener{
		cfg:        cfg,
		opts:       o,
		log:        logger.Named("sqltunnel").With(zap.String("listener", cfg.Name)),
		sessions:   map[*session]struct{}{},
		acceptDone: make(chan struct{}),
	}
	l.drainTimeout.Store(int64(o.drainTimeout))
	l.bytesUp, l.bytesDown = o.metrics.byteCounters(cfg.Name)
	l.tds7TLS = serverConfig(serverTLS())
	l.tds8TLS = serverConfig(serverTLS(alpnTDS8))
	if l.tds7TLS == nil || l.tds8TLS == nil {
		return nil, fmt.Errorf("sqltunnel: listener %s: the server TLS source returned a nil configuration", cfg.Name)
	}
	// Limited once, not per connection: one configuration keeps one set of
	// session ticket keys, so clients can resume their sessions.
	l.tds7TLS = tdstls.Limit(l.tds7TLS)
	if !slices.Contains(l.tds8TLS.NextProtos, alpnTDS8) {
		l.tds8TLS.NextProtos = append([]string{alpnTDS8}, l.tds8TLS.NextProtos...)
	}

	u := cfg.Upstream
	l.upAddr, _ = configs.ParseUpstreamAddress(u.Address) // checkConfig parsed it
	l.verifyMode = verifyMode(u)
	if u.Encryption != configs.UpstreamEncryptionDisabledLoopback {
		up := o.upstreamTLS
		if up == nil {
			var err error
			up, err = tlsmgr.ClientTLSConfig(u.TLS(), logger)
			if err != nil {
				return nil, fmt.Errorf("sqltunnel: listener %s: upstream TLS: %w", cfg.Name, err)
			}
		}
		l.upTLS = newUpstreamTLS(up)
		l.routes = &routeTLS{upstream: u, base: o.upstreamTLS, logger: logger}
		if u.InsecureSkipVerify {
			l.log.Warn("upstream certificate verification is disabled (insecure_skip_verify); set pin_sha256 or ca_file",
				zap.String("upstream", u.Address))
		}
	}
	return l, nil
}

// checkConfig re-checks what the listener relies on; configs.Validate has
// normally said it all, with key names, before New is called.
func checkConfig(cfg configs.SQLListener) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("sqltunnel: listener %s: %s: %s", cfg.Name, key, fmt.Sprintf(format, args...))
	}
	if !cfg.ClientEncryption.Valid() {
		return bad("client_encryption", "%q is not required, strict or allow_plaintext_loopback", cfg.ClientEncryption)
	}
	a, err := configs.ParseUpstreamAddress(cfg.Upstream.Address)
	if err != nil {
		return bad("upstream.address", "%v", err)
	}
	host := a.Host
	if !cfg.Upstream.Encryption.Valid() {
		return bad("upstream.encryption", "%q is not required, strict or disabled_loopback", cfg.Upstream.Encryption)
	}
	// Defence in depth: a plain upstream leg is only acceptable when it
	// never leaves the host. The dialed address is checked again.
	if cfg.Upstream.Encryption == configs.UpstreamEncryptionDisabledLoopback && !configs.IsLoopbackHost(host) {
		return bad("upstream.encryption", "disabled_loopback is only allowed for a loopback upstream, not %q", host)
	}
	return nil
}

// serverConfig clones a client-facing configuration and disables dynamic
// record sizing, so that each TDS packet the relay writes leaves in one
// TLS record (see MS-TDS 2.2.6.5 and go-mssqldb issue 166).
func serverConfig(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	c = c.Clone()
	c.DynamicRecordSizingDisabled = true
	return c
}

// verifyMode names how the upstream certificate is verified, for the audit.
func verifyMode(u configs.SQLUpstream) string {
	switch {
	case u.Encryption == configs.UpstreamEncryptionDisabledLoopback:
		return "none"
	case u.InsecureSkipVerify:
		return "insecure"
	case u.PinSHA256 != "" && u.CAFile != "":
		return "ca+pin"
	case u.PinSHA256 != "":
		return "pin"
	case u.CAFile != "":
		return "ca"
	}
	return "system"
}

// Listen binds the listen address. Calling it again after success is an
// error; Serve calls it when it has not been called.
func (l *Listener) Listen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return fmt.Errorf("sqltunnel: listener %s: already listening on %s", l.cfg.Name, l.ln.Addr())
	}
	ln, err := net.Listen("tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sqltunnel: listener %s: %w", l.cfg.Name, err)
	}
	l.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Serve accepts and serves connections until ctx ends, then stops accepting,
// lets sessions finish for up to the drain timeout, closes the rest (logging
// how many) and returns nil. After Retire it returns once the sessions open
// at that moment have ended by themselves (or, if ctx ends first, after the
// same bounded drain). It returns an error if the listener cannot be bound
// or fails for good. Serve may be called once.
func (l *Listener) Serve(ctx context.Context) error {
	if l.Addr() == nil {
		if err := l.Listen(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	if l.serving {
		l.mu.Unlock()
		return fmt.Errorf("sqltunnel: listener %s: Serve called more than once", l.cfg.Name)
	}
	l.serving = true
	ln := l.ln
	l.mu.Unlock()
	l.opts.metrics.attach(l)
	defer l.opts.metrics.detach(l)

	// Sessions outlive ctx during the drain; hardStop ends them after it.
	sessCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		handOff := l.handOff
		l.mu.Unlock()
		if !handOff {
			_ = ln.Close()
		}
	})
	defer stop()

	l.log.Info("sql listener ready",
		zap.Stringer("addr", ln.Addr()),
		zap.String("client_encryption", string(l.cfg.ClientEncryption)),
		zap.String("upstream", l.cfg.Upstream.Address),
		zap.String("upstream_encryption", string(l.cfg.Upstream.Encryption)),
		zap.String("upstream_verify", l.verifyMode))

	var err error
	if !l.retired.Load() {
		accept := ln
		if l.opts.wrapListener != nil {
			accept = l.opts.wrapListener(ln)
		}
		err = l.acceptLoop(ctx, sessCtx, accept)
	}
	close(l.acceptDone)
	sessionsDone := make(chan struct{})
	go func() { l.wg.Wait(); close(sessionsDone) }()
	if l.retired.Load() && ctx.Err() == nil {
		// Retired by a reload: sessions run until they end by themselves.
		select {
		case <-sessionsDone:
		case <-ctx.Done():
		}
	}
	l.drain(hardStop, sessionsDone)
	if ctx.Err() != nil || l.retired.Load() {
		return nil
	}
	return err
}

func (l *Listener) acceptLoop(ctx, sessCtx context.Context, ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || l.retired.Load() {
				if c != nil {
					_ = c.Close()
				}
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("sqltunnel: listener %s: %w", l.cfg.Name, err)
			}
			// EMFILE, ECONNABORTED and friends: pause and go on, so a burst
			// of failures does not spin the CPU.
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			l.log.Warn("accept failed; backing off", zap.Error(err), zap.Duration("backoff", backoff))
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if limit := l.opts.maxConns; limit > 0 && l.active.Load() >= int64(limit) {
			l.log.Warn("connection limit reached; closing connection",
				zap.Stringer("remote", c.RemoteAddr()), zap.Int("max_conns", limit))
			_ = c.Close()
			l.opts.metrics.connection(l.cfg.Name, "unknown", "none", "none", outcomeOverLimit)
			continue
		}
		l.start(sessCtx, c)
	}
}

// start runs a session in its own goroutine, registered for the drain.
func (l *Listener) start(ctx context.Context, c net.Conn) {
	s := newSession(l, c)
	l.mu.Lock()
	l.sessions[s] = struct{}{}
	l.mu.Unlock()
	l.active.Add(1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		s.serve(ctx)
	}()
}

// finish unregisters a session; serve calls it last, so that a session
// that has logged its end no longer counts toward MaxConns.
func (l *Listener) finish(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
	l.active.Add(-1)
}

// drain waits for the sessions (done is closed when they have all ended)
// for up to the drain timeout, then closes the remaining ones and waits for
// their goroutines.
func (l *Listener) drain(hardStop context.CancelFunc, done <-chan struct{}) {
	timeout := time.Duration(l.drainTimeout.Load())
	n := l.active.Load()
	if n > 0 {
		l.log.Info("draining sql sessions", zap.Int64("sessions", n), zap.Duration("drain_timeout", timeout))
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		l.log.Info("sql listener stopped", zap.Int("closed_sessions", 0))
		return
	case <-t.C:
	}
	hardStop()
	l.mu.Lock()
	closed := len(l.sessions)
	for s := range l.sessions {
		s.closeAll()
	}
	l.closed = closed
	l.mu.Unlock()
	<-done
	l.log.Warn("sql listener stopped; closed sessions still open after the drain timeout", zap.Int("closed_sessions", closed))
}
