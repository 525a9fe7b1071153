// Package browser speaks SQL Server Browser, the SQL Server Resolution
// Protocol (MC-SQLR) that clients use on UDP port 1434 to turn a named
// instance (DB01\SQLEXPRESS) into a TCP port. It has three parts: a pure
// codec for the requests (CLNT_BCAST_EX, CLNT_UCAST_EX, CLNT_UCAST_INST,
// CLNT_UCAST_DAC) and the SVR_RESP reply; a Responder that answers for the
// gateway's TDS listeners, so that connection strings naming an instance
// reach the gateway; and a client, LookupPort with a Cache, for upstreams
// written as host\INSTANCE.
//
// The Responder is built not to be a UDP amplifier: replies go only to
// well-formed requests for instances it knows, are exactly their text plus
// the 3-byte header in one datagram, and are rate-limited per source
// address with a token bucket whose table of sources is bounded. Malformed
// datagrams, unknown instances and DAC requests get no answer and are
// counted (Metrics).
//
// What it does not do: it never announces the dedicated administrator
// connection (DAC), named pipes or any protocol but TCP; it does not relay
// requests to a real SQL Server Browser; it does not choose the source
// address of a reply (a responder bound to a wildcard address on a host
// with several addresses may answer from another address than the client
// asked, and clients drop such replies); and it has no notion of TLS or
// TDS, which are package sqltunnel's.
package browser
