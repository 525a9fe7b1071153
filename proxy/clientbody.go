package proxy

import (
	"io"
	"net/http"
)

// clientBodyError marks an error reading the client's request body (a
// malformed or truncated chunked encoding, a body cut short). The transport
// returns it from the round trip as is, so the error handler can answer 400
// instead of blaming the upstream with a 502, and passive health does not
// count it against the upstream: otherwise a few malformed requests would
// eject a healthy server from its farm.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string {
	return "reading the client's request body: " + e.err.Error()
}
func (e *clientBodyError) Unwrap() error { return e.err }

// clientBody marks the errors of a request body as the client's.
type clientBody struct{ io.ReadCloser }

func (b clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err: err}
	}
	return n, err
}

// guardFraming hardens a request's framing before it is proxied.
//
// A chunked HTTP/1.1 request may have carried a Content-Length too, which
// net/http removes before the handler sees the request (transfer.go,
// fixLength), so the two cannot be told apart here. RFC 9112 section 6.3
// requires closing the connection after responding to such a request: a
// front end that framed it by Content-Length would otherwise have its next
// request desynchronised (request smuggling). So the connection of every
// chunked HTTP/1.x request is closed after the response; browsers do not
// send chunked requests, so keep-alive is not lost in practice.
//
// Except for requests carrying NTLM or Negotiate credentials: those
// authenticate the connection itself (winauth.go), a close in the middle of
// the handshake would make it fail for every client that streams its body,
// and they run on an upstream connection of their own.
func guardFraming(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 && !hasConnAuth(r.Header) {
		w.Header().Set("Connection", "close")
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = clientBody{r.Body}
	}
}
