//go:build windows

package sqltunnel

import (
	"errors"
	"syscall"
)

// Winsock error codes: package syscall's ECONNRESET and friends are invented
// values Winsock never returns (they are checked too, for errors built by Go).
// https://learn.microsoft.com/windows/win32/winsock/windows-sockets-error-codes-2
const (
	wsaeconnaborted syscall.Errno = 10053
	wsaeconnreset   syscall.Errno = 10054
)

// isReset reports a connection the peer reset or aborted.
func isReset(err error) bool {
	return errors.Is(err, wsaeconnreset) || errors.Is(err, wsaeconnaborted) || errors.Is(err, syscall.ECONNRESET)
}
