package main

import (
	"context"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
)

// The Windows service (service_windows.go) runs `gateway run` with what
// its service manager needs carried on the context: where to report the
// gateway's state, and the "paramchange" requests that reload it.

type notifierKey struct{}

// withNotifier makes the gateway started under ctx report to n.
func withNotifier(ctx context.Context, n lifecycle.Notifier) context.Context {
	return context.WithValue(ctx, notifierKey{}, n)
}

// notifierFrom is the notifier set on ctx, or nil (systemd's).
func notifierFrom(ctx context.Context) lifecycle.Notifier {
	n, _ := ctx.Value(notifierKey{}).(lifecycle.Notifier)
	return n
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
