//go:build !windows

package sqltunnel

import (
	"errors"
	"syscall"
)

// isReset reports a connection the peer reset or aborted.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}
