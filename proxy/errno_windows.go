//go:build windows

package proxy

import (
	"errors"
	"syscall"

	"golang.org/x/sys/windows"
)

// Winsock returns its own error codes (golang.org/x/sys/windows names
// them); package syscall's ECONNREFUSED and the like are invented values
// Winsock never returns, checked too for errors built by Go itself.

func isRefused(err error) bool {
	return errors.Is(err, windows.WSAECONNREFUSED) || errors.Is(err, syscall.ECONNREFUSED)
}

func isUnreachable(err error) bool {
	return errors.Is(err, windows.WSAEHOSTUNREACH) || errors.Is(err, windows.WSAENETUNREACH) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

func isReset(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNABORTED) || errors.Is(err, syscall.ECONNRESET)
}
