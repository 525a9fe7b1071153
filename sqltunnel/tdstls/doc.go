// Package tdstls runs the TLS handshake of TDS 7.x, whose records travel as
// the payload of PRELOGIN packets until the handshake is done, after which TLS
// records flow directly on the TCP connection (MS-TDS 2.2.6.5 and 3.2.5.2).
//
// Server and Client wrap a raw connection positioned right after the PRELOGIN
// exchange and return a *tls.Conn that carries TDS packets. The handshake is
// limited to TLS 1.2, the highest version TDS 7.x allows. TDS 8 ("strict")
// needs none of this: it is plain TLS first, handled with crypto/tls directly.
//
// It does not decide policy (which client may skip TLS), read PRELOGIN or
// LOGIN7, or log: that is package sqltunnel's job.
package tdstls
