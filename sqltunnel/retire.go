package sqltunnel

import (
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// deadliner is a listening socket whose Accept can be woken without
// closing it (*net.TCPListener).
type deadliner interface {
	SetDeadline(time.Time) error
}

// Retire stops the listener accepting connections, for a configuration
// reload that removes or replaces it. Sessions already open go on, on this
// listener's configuration, until they end by themselves; Serve returns then
// (or, if its context ends first, after the usual bounded drain).
//
// With keepSocket, the listening socket is not closed but returned, so that
// a replacement listener can accept on it (WithNetListener): connections
// that arrive meanwhile wait in the kernel's queue and go to the
// replacement, none is refused. Without it, or when the socket cannot be
// handed over, the socket is closed and Retire returns nil. Retire returns
// once the accept loop has stopped; calling it again returns nil.
func (l *Listener) Retire(keepSocket bool) net.Listener {
	l.mu.Lock()
	ln := l.ln
	if ln == nil || l.retired.Load() {
		l.mu.Unlock()
		return nil
	}
	dl, canKeep := ln.(deadliner)
	l.handOff = keepSocket && canKeep
	handOff := l.handOff
	serving := l.serving
	l.retired.Store(true)
	l.mu.Unlock()

	l.log.Info("sql listener retired; open sessions continue on the previous configuration",
		zap.Int64("sessions", l.active.Load()), zap.Bool("socket_handed_over", handOff))
	if handOff {
		// Accept returns a timeout error at once; the loop sees retired.
		_ = dl.SetDeadline(time.Unix(1, 0))
	} else {
		_ = ln.Close()
	}
	if serving {
		<-l.acceptDone
	}
	if !handOff {
		return nil
	}
	_ = dl.SetDeadline(time.Time{})
	return ln
}

// Adopt makes ln, an already bound socket, the listener's socket, in place
// of Listen: the socket another listener handed over with Retire(true), so
// that a listener replaced by a reload takes over its address without a
// moment in which connections are refused. The Listener then owns ln. It
// fails if the listener already has a socket.
func (l *Listener) Adopt(ln net.Listener) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return fmt.Errorf("sqltunnel: listener %s: already listening on %s", l.cfg.Name, l.ln.Addr())
	}
	l.ln = ln
	return nil
}

// SetDrainTimeout changes the bound of the drain that follows the end of
// Serve's context (drain_timeout changed by a reload). Zero or negative
// closes the sessions at once.
func (l *Listener) SetDrainTimeout(d time.Duration) {
	l.drainTimeout.Store(int64(max(d, 0)))
}

// Name is the listener's configured name (sql[].name).
func (l *Listener) Name() string { return l.cfg.Name }

// Sessions is the number of client connections open now.
func (l *Listener) Sessions() int64 { return l.active.Load() }

// ClosedAtDrain is the number of sessions the drain closed because they
// were still open when the drain timeout ran out; read it after Serve has
// returned.
func (l *Listener) ClosedAtDrain() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// UpstreamUp reports whether the last attempt to connect to the SQL Server
// succeeded (true before any attempt): a passive health signal for
// readiness, since the gateway does not probe SQL Server on its own.
func (l *Listener) UpstreamUp() bool { return !l.upstreamDown.Load() }

// upstreamReached records the outcome of an upstream dial.
func (l *Listener) upstreamReached(ok bool, err error) {
	if ok {
		if l.upstreamDown.Swap(false) {
			l.log.Info("sql upstream reachable again", zap.String("upstream", l.cfg.Upstream.Address))
		}
		return
	}
	if !l.upstreamDown.Swap(true) {
		l.log.Warn("sql upstream unreachable", zap.String("upstream", l.cfg.Upstream.Address), zap.Error(err))
	}
}

// UpstreamVerify names how the upstream's certificate is verified: ca,
// pin, ca+pin, system, insecure, or none (disabled_loopback).
func (l *Listener) UpstreamVerify() string { return l.verifyMode }

// Config is the listener's configuration.
func (l *Listener) Config() configs.SQLListener { return l.cfg }
