package lifecycle

import (
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/sdnotify"
)

// Notifier tells whoever supervises the process about the gateway's
// state: systemd through sd_notify (Type=notify units, the default), or the
// Windows service manager when the gateway runs as a service.
type Notifier interface {
	// Ready says the gateway serves (after start, and after each reload).
	Ready(status string)
	// Reloading says a reload has begun.
	Reloading()
	// Stopping says the drain has begun; it ends within the given time.
	Stopping(status string, within time.Duration)
}

// Systemd reports to $NOTIFY_SOCKET; without it, it does nothing.
type Systemd struct{ Log *zap.Logger }

func (s Systemd) Ready(status string) { s.check(sdnotify.Ready(status)) }
func (s Systemd) Reloading()          { s.check(sdnotify.Reloading()) }
func (s Systemd) Stopping(status string, within time.Duration) {
	s.check(sdnotify.Stopping(status, within))
}

func (s Systemd) check(_ bool, err error) {
	if err != nil && s.Log != nil {
		s.Log.Warn("notifying systemd failed", zap.Error(err))
	}
}
