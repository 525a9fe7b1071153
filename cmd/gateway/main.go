// Command gateway is an encrypting reverse proxy for legacy Windows stacks:
// HTTPS in front of IIS and a TDS-aware TLS tunnel in front of SQL Server.
// This package is wiring only: it parses the command line, loads the
// configuration and starts the packages that do the work.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if runningAsService() {
		// Started by the Windows service manager, with the command line
		// `gateway service install` registered (service_windows.go).
		err := runService(os.Args[1:])
		os.Exit(exitCode(err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
	}
	os.Exit(exitCode(err))
}
