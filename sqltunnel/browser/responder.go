package browser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Port is the UDP port of SQL Server Browser: clients always ask this port
// of the host named in their connection string.
const Port = 1434

// DefaultVersion is the Version a reply gives for an Instance without one
// (SQL Server 2022 RTM). Clients read only the tcp port; the version is for
// people browsing the network.
const DefaultVersion = "16.0.1000.6"

// Config configures a Responder.
type Config struct {
	// Listen is the UDP address to answer on, host:port. Clients ask port
	// 1434 of the host they connect to, and drop a reply that comes from
	// another address than the one they asked: on a host with several
	// addresses, listen on the one clients use rather than on all.
	Listen string
	// ServerName is the SERVERNAME of every reply; "" means this machine's
	// host name, its first label in upper case, as SQL Server reports its
	// NetBIOS name.
	ServerName string
	// Instances are the instances answered for; SetInstances replaces them.
	Instances []Instance
}

// Instance is one named instance the responder announces: a TDS listener.
type Instance struct {
	// Name is the instance name clients write after the backslash
	// (DB01\SQLEXPRESS), matched case-insensitively; 1 to 32 bytes, without
	// ';' or NUL.
	Name string
	// Port is the TCP port of the listener serving the instance.
	Port int
	// Version is the version the reply announces; "" means DefaultVersion.
	Version string
}

// Responder answers SQL Server Browser requests (MC-SQLR) for the
// gateway's TDS listeners: CLNT_BCAST_EX and CLNT_UCAST_EX with every
// instance, CLNT_UCAST_INST with the instance named. Its methods are safe
// for concurrent use.
type Responder struct {
	cfg  Config
	log  *zap.Logger
	opts options

	table atomic.Pointer[replies]

	mu      sync.Mutex
	conn    *net.UDPConn
	serving bool
	closed  bool

	// onHandled, set by tests before Serve, is called with the result of
	// each datagram once it is handled (after its reply is sent).
	onHandled func(result string)
}

// replies are the datagrams the responder sends, built once per instance
// list: a request costs a map lookup and a write.
type replies struct {
	all    []byte            // SVR_RESP listing every instance; nil when none
	byName map[string][]byte // upper-case name to its SVR_RESP
	names  []string
}

// New checks cfg and the options and returns a Responder that is not yet
// listening (see Listen and Serve). logger nil means no logging.
func New(cfg Config, logger *zap.Logger, opts ...Option) (*Responder, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = hostServerName()
	}
	if err := checkValue("ServerName", cfg.ServerName); err != nil {
		return nil, fmt.Errorf("sql browser: %w", err)
	}
	if len(cfg.ServerName) > maxServerName {
		return nil, fmt.Errorf("sql browser: %w: server name is %d bytes, at most %d", ErrTooLong, len(cfg.ServerName), maxServerName)
	}
	r := &Responder{cfg: cfg, log: logger.Named("sql_browser"), opts: o}
	t, err := r.build(cfg.Instances)
	if err != nil {
		return nil, err
	}
	r.table.Store(t)
	r.cfg.Instances = nil // the table is the truth from now on
	return r, nil
}

// hostServerName is the machine's host name, first label, upper case.
func hostServerName() string {
	h, err := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	if err != nil || checkValue("ServerName", h) != nil || len(h) > maxServerName {
		return "GATEWAY"
	}
	return strings.ToUpper(h)
}

// build checks an instance list and renders its replies.
func (r *Responder) build(list []Instance) (*replies, error) {
	t := &replies{byName: make(map[string][]byte, len(list))}
	var all []byte
	for i, in := range list {
		switch {
		case in.Name == "" || len(in.Name) > MaxRequestInstance || strings.ContainsAny(in.Name, ";\x00"):
			return nil, fmt.Errorf("sql browser: instance %d: name %q: %w: use 1 to %d bytes without ';' or NUL", i, in.Name, ErrInvalidValue, MaxRequestInstance)
		case in.Port < 1 || in.Port > 65535:
			return nil, fmt.Errorf("sql browser: instance %s: %w: port %d", in.Name, ErrInvalidValue, in.Port)
		}
		key := strings.ToUpper(in.Name)
		if _, dup := t.byName[key]; dup {
			return nil, fmt.Errorf("sql browser: instance %s: %w: listed twice (names are case-insensitive)", in.Name, ErrInvalidValue)
		}
		version := in.Version
		if version == "" {
			version = DefaultVersion
		}
		text, err := AppendInstance(nil, InstanceInfo{ServerName: r.cfg.ServerName, InstanceName: in.Name, Version: version, TCPPort: in.Port})
		if err != nil {
			return nil, fmt.Errorf("sql browser: instance %s: %w", in.Name, err)
		}
		if len(text) > MaxInstanceData {
			return nil, fmt.Errorf("sql browser: instance %s: %w: reply of %d bytes, at most %d", in.Name, ErrTooLong, len(text), MaxInstanceData)
		}
		t.byName[key], _ = AppendResponse(nil, text)
		t.names = append(t.names, in.Name)
		all = append(all, text...)
	}
	if len(all) > MaxListData {
		return nil, fmt.Errorf("sql browser: %w: %d instances make a %d-byte reply, at most %d", ErrTooLong, len(list), len(all), MaxListData)
	}
	if len(all) > 0 {
		t.all, _ = AppendResponse(nil, all)
	}
	return t, nil
}

// SetInstances replaces the instances answered for, as a configuration
// reload changes the listeners; requests after it returns get the new
// answers. An invalid list is refused and the old one stays.
func (r *Responder) SetInstances(list []Instance) error {
	t, err := r.build(list)
	if err != nil {
		return err
	}
	r.table.Store(t)
	r.log.Info("sql browser instances", zap.Strings("instances", t.names))
	return nil
}

// Instances returns the names of the instances answered for.
func (r *Responder) Instances() []string {
	return append([]string(nil), r.table.Load().names...)
}

// Listen binds the UDP socket of cfg.Listen, so that an address in use is
// reported before Serve; Serve calls it when needed. It is idempotent.
func (r *Responder) Listen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("sql browser: %w", net.ErrClosed)
	}
	if r.conn != nil {
		return nil
	}
	pc, err := net.ListenPacket("udp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sql browser: listening on udp %s: %w", r.cfg.Listen, err)
	}
	r.conn = pc.(*net.UDPConn)
	return nil
}

// Addr returns the address the responder listens on, or nil before Listen.
func (r *Responder) Addr() net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		return nil
	}
	return r.conn.LocalAddr()
}

// Close releases the socket; Serve then returns nil. It is for a responder
// that was listened on but is not served; otherwise end Serve's context.
// It is safe to call more than once.
func (r *Responder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.conn == nil {
		return nil
	}
	err := r.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Serve answers requests until ctx ends (or Close), then closes the socket
// and returns nil; an error means the socket could not be bound, or Serve
// was called twice. Requests are handled one at a time, in order: each is
// a parse, a map lookup and one write.
func (r *Responder) Serve(ctx context.Context) error {
	if err := r.Listen(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.serving {
		r.mu.Unlock()
		return errors.New("sql browser: Serve called twice")
	}
	r.serving = true
	conn := r.conn
	r.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = r.Close() })
	defer stop()
	defer func() { _ = r.Close() }()

	r.log.Info("sql browser serving", zap.Stringer("address", conn.LocalAddr()), zap.Strings("instances", r.Instances()))
	lim := newLimiter(r.opts.rate, r.opts.burst, r.opts.maxSources, time.Now())
	// One byte more than the longest request, so that a longer datagram
	// (truncated by the read) is seen as too long.
	buf := make([]byte, maxRequest+1)
	var backoff time.Duration
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				r.log.Info("sql browser stopped", zap.Stringer("address", conn.LocalAddr()))
				return nil
			}
			if n > 0 {
				// Windows reports a datagram longer than the buffer as
				// WSAEMSGSIZE along with its first bytes.
				r.handle(conn, buf[:n], src, lim)
				continue
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.log.Warn("sql browser read failed", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		r.handle(conn, buf[:n], src, lim)
	}
}

// handle answers one datagram, or not, and counts it.
func (r *Responder) handle(conn *net.UDPConn, b []byte, src netip.AddrPort, lim *limiter) {
	typ := MessageType(0)
	if len(b) > 0 {
		typ = MessageType(b[0])
	}
	result, reply, instance := r.decide(b)
	if result == ResultAnswered {
		if !lim.allow(sourceKey(src.Addr()), time.Now()) {
			result = ResultRateLimited
		} else if _, err := conn.WriteToUDPAddrPort(reply, src); err != nil {
			result = ResultSendFailed
			r.log.Debug("sql browser reply failed", zap.Stringer("client", src), zap.Error(err))
		} else {
			r.opts.metrics.reply(len(reply))
		}
		r.opts.metrics.setSources(lim.sources())
	}
	switch typ {
	case TypeBroadcast, TypeUnicast, TypeInstance, TypeDAC:
	default:
		typ = 0 // "other": bound the label's values
	}
	r.opts.metrics.request(typ, result)
	if r.onHandled != nil {
		r.onHandled(result)
	}
	if ce := r.log.Check(zap.DebugLevel, "sql browser request"); ce != nil {
		ce.Write(zap.Stringer("client", src), zap.Stringer("type", typ), zap.String("instance", instance),
			zap.String("result", result), zap.Int("bytes", len(b)))
	}
}

// decide returns what a request gets: a result, and the reply when the
// result is ResultAnswered (before rate limiting).
func (r *Responder) decide(b []byte) (result string, reply []byte, instance string) {
	req, err := ParseRequest(b)
	if err != nil {
		return ResultMalformed, nil, ""
	}
	t := r.table.Load()
	switch req.Type {
	case TypeDAC:
		// The dedicated administrator connection is an upstream matter,
		// reachable only from the server itself by default: never
		// announce it through the gateway.
		return ResultDACIgnored, nil, req.Instance
	case TypeInstance:
		reply = t.byName[strings.ToUpper(req.Instance)]
	default:
		reply = t.all
	}
	if reply == nil {
		// As SQL Server Browser does, an unknown instance gets no answer.
		return ResultUnknownInstance, nil, req.Instance
	}
	return ResultAnswered, reply, req.Instance
}
