// Package tds is a pure codec for the parts of Microsoft's Tabular Data
// Stream protocol (MS-TDS) that the gateway must understand to terminate TLS
// and police logins: the 8-byte packet header and packet framing, the
// PRELOGIN option table, the fixed part and safe fields of LOGIN7, and the
// server tokens a login reply is made of (ERROR, INFO, LOGINACK, ENVCHANGE,
// DONE, FEATUREEXTACK).
//
// Bytes go in, values or typed errors come out. Every length and offset read
// from the wire is checked against the buffer it points into before use, and
// no input makes the package panic; each decoder has a fuzz target with a
// committed seed corpus, and the MS-TDS section 4 example packets are test
// fixtures. The only I/O is [Reader] and [Writer], which move whole packets
// over an io.Reader or io.Writer supplied by the caller.
//
// What it does not do: it opens no connections, starts no TLS, keeps no
// session state, logs nothing and never decides policy (which encryption
// values to accept is the job of package sqltunnel). It does not decode result
// sets: COLMETADATA, ROW and the other data tokens are reported as
// unsupported by [TokenScanner]. LOGIN7 decoding is read-only and never
// exposes the password, the change-password or the SSPI blob; the one
// exception, [DecodePasswordForServerSide], exists for the test SQL Server
// double and its result must never be logged.
package tds
