//go:build !unix

package proxy

// alive cannot peek at the socket here: a connection the upstream closed
// while idle fails its next request, which RoundTrip sends again on a new
// connection when it is replayable.
func (pc *h1Conn) alive() bool { return true }

// peek has nothing to look at here; it answers as alive does.
func (pc *h1Conn) peek(uintptr) bool {
	pc.peekOK = true
	return true
}
