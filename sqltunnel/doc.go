// Package sqltunnel is the TDS listener and relay that puts verified TLS in
// front of Microsoft SQL Server: it enforces the client encryption policy,
// terminates TLS carried inside PRELOGIN (TDS 7.x) and TDS 8 strict TLS,
// dials and verifies the upstream server, and logs safe login metadata
// (being built). The wire codec it relies on lives in sqltunnel/tds.
package sqltunnel
