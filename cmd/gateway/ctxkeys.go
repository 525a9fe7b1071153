package main

import (
	"context"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
)

// The Windows service (service_windows.go) runs `gateway run` with what
// its service manager needs carried on the context: where to report the
// gateway's state, and the "paramchange" requests that reload it.

type notifierKey struct{}

// notifierFrom is the notifier set on ctx, or nil (systemd's).
func notifierFrom(ctx context.Context) lifecycle.Notifier {
	n, _ := ctx.Value(notifierKey{}).(lifecycle.Notifier)
	return n
}

type reloadKey struct{}

func reloadRequestsFrom(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(reloadKey{}).(<-chan struct{})
	return ch // nil: never
}
