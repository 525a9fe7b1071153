// Package proxy is the gateway's HTTPS front: it terminates TLS for browsers
// and forwards each request over HTTP/1.1 (plain, or TLS for https://
// upstreams) to the IIS servers of the site its Host header names, and it
// runs the plain-HTTP listener that redirects to HTTPS (308) and hands ACME
// HTTP-01 challenges to the handler tlsmgr provides.
//
// A Server owns two listeners (http.listen and http.redirect_listen), selects
// a site per request (exact host, then a one-label wildcard such as
// *.example.com, then the first site), spreads requests over the site's
// upstreams in turn, sets fresh X-Forwarded-For/-Proto/-Host headers (we are
// the TLS edge, so anything a client sent under those names, or as X-Real-IP
// or X-Original-URL, is a lie and is removed), passes WebSocket upgrades and
// streamed responses through, adds HSTS, maps upstream failures to short
// 502/504 pages, and on shutdown drains in-flight requests for a bounded
// time. Clients get HTTP/2 or HTTP/1.1; upstreams always get HTTP/1.1.
//
// It does not obtain, select or reload certificates, and does not choose the
// certificate for a TLS handshake: that is tlsmgr's job, through the
// *tls.Config handed to New. It does not validate configuration (configs does)
// and does not cache, compress, rewrite bodies, authenticate users, retry
// failed requests or health-check upstreams actively; an upstream that cannot
// be connected to is only skipped for a short while (passive back-off).
package proxy
