package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/sdnotify"
)

// lifecycle tells whoever supervises the process about the gateway's state:
// systemd through sd_notify (Type=notify units), or the Windows service
// manager when the gateway runs as a service (service_windows.go).
type lifecycle interface {
	ready(status string)
	reloading()
	// stopping says the drain has begun; it ends within the given time.
	stopping(status string, within time.Duration)
}

type lifecycleKey struct{}

// withLifecycle makes the gateway started under ctx report to l.
func withLifecycle(ctx context.Context, l lifecycle) context.Context {
	return context.WithValue(ctx, lifecycleKey{}, l)
}

// lifecycleFrom is the lifecycle set on ctx, else systemd's notification
// socket (which does nothing when $NOTIFY_SOCKET is unset).
func lifecycleFrom(ctx context.Context, logger *zap.Logger) lifecycle {
	if l, ok := ctx.Value(lifecycleKey{}).(lifecycle); ok {
		return l
	}
	return systemd{log: logger}
}

// systemd reports to $NOTIFY_SOCKET.
type systemd struct{ log *zap.Logger }

func (s systemd) ready(status string) { s.check(sdnotify.Ready(status)) }
func (s systemd) reloading()          { s.check(sdnotify.Reloading()) }
func (s systemd) stopping(status string, within time.Duration) {
	s.check(sdnotify.Stopping(status, within))
}

func (s systemd) check(_ bool, err error) {
	if err != nil {
		s.log.Warn("notifying systemd failed", zap.Error(err))
	}
}

type reloadKey struct{}

// withReloadRequests makes a gateway started under ctx also reload when ch
// receives (the Windows service manager's "paramchange").
func withReloadRequests(ctx context.Context, ch <-chan struct{}) context.Context {
	return context.WithValue(ctx, reloadKey{}, ch)
}

func reloadRequestsFrom(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(reloadKey{}).(<-chan struct{})
	return ch // nil: never
}
