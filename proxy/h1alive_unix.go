//go:build unix

package proxy

import "syscall"

// alive reports whether a pooled connection may carry a request: the
// upstream has neither closed it nor sent anything unasked while it was
// idle. http.Transport learns this from a read it keeps pending on every
// idle connection; here one non-blocking peek does, just before use.
func (pc *h1Conn) alive() bool {
	if pc.sys == nil {
		return true
	}
	pc.peekOK = false
	err := pc.sys.Read(pc.peekFn)
	return err == nil && pc.peekOK
}

// peek is alive's look at the socket.
func (pc *h1Conn) peek(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// Nothing to read yet is the one good answer: 0 is the upstream's
	// close, and a byte is a response nobody asked for.
	pc.peekOK = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
	return true // never wait for readiness
}
