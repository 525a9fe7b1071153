//go:build windows

package proxy

import (
	"errors"
	"syscall"
)

// Winsock error codes. Package syscall names few of them, and its
// ECONNREFUSED and the like are invented values that Winsock never returns
// (they are checked too, for errors built by Go itself).
// https://learn.microsoft.com/windows/win32/winsock/windows-sockets-error-codes-2
const (
	wsaeconnaborted syscall.Errno = 10053
	wsaeconnreset   syscall.Errno = 10054
	wsaenetunreach  syscall.Errno = 10051
	wsaeconnrefused syscall.Errno = 10061
	wsaehostunreach syscall.Errno = 10065
)

func isRefused(err error) bool {
	return errors.Is(err, wsaeconnrefused) || errors.Is(err, syscall.ECONNREFUSED)
}

func isUnreachable(err error) bool {
	return errors.Is(err, wsaehostunreach) || errors.Is(err, wsaenetunreach) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

func isReset(err error) bool {
	return errors.Is(err, wsaeconnreset) || errors.Is(err, wsaeconnaborted) || errors.Is(err, syscall.ECONNRESET)
}
