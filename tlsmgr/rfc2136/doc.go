// Package rfc2136 is a libdns provider that writes DNS records with RFC 2136
// dynamic updates, signed with a TSIG key (RFC 8945), to the primary server
// of a zone: BIND, Windows DNS, PowerDNS, Knot. The gateway uses it to
// publish ACME DNS-01 challenge records through certmagic's DNS01Solver.
//
// Each change is one UPDATE message, which the server applies all at once or
// not at all (RFC 2136 section 3.4.2); a refusal is an *UpdateError naming
// the server, the zone, the key and the response code. GetRecords reads the
// zone with a signed AXFR (the key needs allow-transfer). It does not wait
// for secondaries to catch up: certmagic checks propagation itself.
package rfc2136
