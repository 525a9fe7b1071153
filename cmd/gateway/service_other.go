//go:build !windows

package main

import (
	"fmt"
	"time"
)

// serviceSupported refuses the service commands: Windows services exist on
// Windows only. It is a usage error (exit 2), as for any command that cannot
// apply here.
func serviceSupported(sub string) error {
	return usageError{fmt.Errorf("service %s: only on Windows; on Linux install configs/gateway.service with systemd (README: \"Operating the gateway\")", sub)}
}

// runningAsService is false: there is no service manager to answer.
func runningAsService() bool { return false }

// runService is never called off Windows.
func runService([]string) error { return fmt.Errorf("not a Windows service") }

func installService(serviceSpec) error             { return serviceSupported("install") }
func uninstallService(string, time.Duration) error { return serviceSupported("uninstall") }
func startService(string, time.Duration) error     { return serviceSupported("start") }
func stopService(string, time.Duration) error      { return serviceSupported("stop") }
