// Package tlsmgr owns the gateway's certificates and TLS policy.
//
// A Manager serves certificates for the names the listeners need, preferring
// operator-supplied PEM pairs and PFX files (reloaded when they change on disk)
// and otherwise obtaining them through certmagic from the configured issuer:
// the built-in internal CA (a certmagic.Issuer whose root and intermediate live
// in certmagic storage) or an ACME CA, through HTTP-01, TLS-ALPN-01 or, with
// tls.acme.dns, DNS-01 with the rfc2136 or route53 provider (dns01.go;
// Challenges says which a name will use), with an external account binding
// when configured. Certmagic renews them in the background. IssueUpstream
// signs certificates for the upstream servers themselves with the same
// internal CA (`gateway ca issue`), recorded in storage for
// UpstreamCertificatesIn.
// ServerTLSConfig gives listeners one policy (TLS 1.2+, ECDHE with AEAD only);
// ClientTLSConfig builds the verification used toward upstream servers (CA file,
// SHA-256 pin, server name); PlanSources explains, without network access,
// where each name's certificate will come from (PlanSourcesIn also reads the
// expiry of certificates already in storage). Reconfigure applies a reloaded
// configuration's operator certificates and names all at once; Metrics
// (metrics.go) reports obtain, renew and reload outcomes and each name's
// expiry, which Certificates also gives with the last outcome (/certs); the
// TLS handshake counter and its failure reasons are defined here for every
// listener (handshake.go).
//
// It does not listen or dial: listeners, the HTTP-01 responder's server and the
// TDS handshake live in proxy and sqltunnel, which take their *tls.Config from
// here.
package tlsmgr
