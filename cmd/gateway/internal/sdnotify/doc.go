// Package sdnotify tells systemd about the gateway's state (sd_notify(3)):
// READY=1 once it serves, RELOADING=1 while a SIGHUP reload runs, STOPPING=1
// when the drain starts, so that a Type=notify (or notify-reload) unit knows
// when the gateway is really up. It writes one datagram per state change to
// the unix socket named by $NOTIFY_SOCKET, and does nothing when that is
// unset (not started by systemd, or on Windows).
//
// It is a few lines rather than a dependency; it does not implement the
// watchdog, file-descriptor store or socket activation.
package sdnotify
