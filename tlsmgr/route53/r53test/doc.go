// Package r53test is a double of the Amazon Route 53 API for tests: an
// httptest server speaking its REST/XML protocol that checks what the real
// service checks before it acts — the AWS Signature Version 4 of every
// request, computed here independently of the SDK with the test's
// credentials (and the session token), the XML of ChangeResourceRecordSets
// (actions, TTLs, quoted TXT values of at most 255 bytes a string, DELETE
// matching the current record set exactly), GetChange going from PENDING to
// INSYNC, ListHostedZonesByName and ListResourceRecordSets ordering. Its
// zones can also be served as DNS on 127.0.0.1 (ServeDNS), standing in for
// Route 53's authoritative servers, so an ACME server can validate DNS-01
// records written through it.
//
// It is test support only: it keeps everything in memory and answers only
// the operations the gateway's provider uses.
package r53test
