//go:build windows

package sqltunnel

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// isReset reports a connection the peer reset or aborted: Winsock's own
// codes (golang.org/x/sys/windows), and package syscall's ECONNRESET, an
// invented value Winsock never returns, for errors built by Go itself.
func isReset(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNABORTED) || errors.Is(err, syscall.ECONNRESET)
}
