package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
)

// notifyHangup starts catching SIGHUP into a channel that holds one pending
// signal, for watchHangup.
func notifyHangup() chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch
}

// watchHangup reloads the configuration on SIGHUP caught by notifyHangup (and on the requests
// carried by ctx: the Windows service manager's "paramchange"). It also keeps
// SIGHUP from terminating the process, its default action.
func watchHangup(ctx context.Context, logger *zap.Logger, ch chan os.Signal, reload func() error) (stop func()) {
	requests := reloadRequestsFrom(ctx)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				logger.Info("sighup received: reloading configuration")
			case <-requests:
				logger.Info("reload requested by the service manager")
			case <-done:
				return
			}
			_ = reload() // logged
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
