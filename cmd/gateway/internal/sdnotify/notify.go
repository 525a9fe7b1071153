package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Socket is the environment variable systemd sets to its notification socket.
const Socket = "NOTIFY_SOCKET"

// Notify sends state (newline-separated VAR=value assignments) to the socket
// named by $NOTIFY_SOCKET. It reports whether a message was sent; without
// the variable it sends nothing and returns false, nil. A name starting with
// "@" is an abstract socket (Linux).
func Notify(state string) (bool, error) {
	name := os.Getenv(Socket)
	if name == "" {
		return false, nil
	}
	if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "@") {
		return false, fmt.Errorf("%s=%q: not a unix socket path", Socket, name)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}

// Ready says the gateway serves (READY=1), with a status line.
func Ready(status string) (bool, error) {
	return Notify("READY=1\nSTATUS=" + oneLine(status))
}

// Reloading says a configuration reload has begun; Ready ends it. systemd
// (notify-reload units) wants the CLOCK_MONOTONIC time with it, which is
// added where the platform provides it.
func Reloading() (bool, error) {
	msg := "RELOADING=1\nSTATUS=reloading configuration"
	if usec, ok := monotonicUsec(); ok {
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", usec)
	}
	return Notify(msg)
}

// Stopping says the gateway is draining before it exits, which takes up
// to within; a positive within asks systemd to extend its stop timeout
// (TimeoutStopSec) by that much, so that it does not kill a drain that
// drain_timeout allows.
func Stopping(status string, within time.Duration) (bool, error) {
	msg := "STOPPING=1\nSTATUS=" + oneLine(status)
	if within > 0 {
		msg += fmt.Sprintf("\nEXTEND_TIMEOUT_USEC=%d", within.Microseconds())
	}
	return Notify(msg)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
