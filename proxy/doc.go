// Package proxy is the gateway's HTTPS front: it terminates TLS for browsers
// and forwards each request over HTTP/1.1 (plain, or TLS for https://
// upstreams) to the IIS servers of the site its Host header names, and it
// runs the plain-HTTP listener that redirects to HTTPS (308) and hands ACME
// HTTP-01 challenges to the handler tlsmgr provides.
//
// A Server owns two listeners (http.listen and http.redirect_listen), selects
// a site per request (exact host, then a one-label wildcard such as
// *.example.com, then the first site), sets fresh X-Forwarded-For/-Proto/
// -Host headers (we are the TLS edge, so anything a client sent under those
// names, as X-ARR-*, X-Real-IP or X-Original-URL, is a lie and is removed),
// adds HSTS, maps upstream failures to short 502/504 pages, and on shutdown
// drains in-flight requests for a bounded time. Clients get HTTP/2 or
// HTTP/1.1; upstreams always get HTTP/1.1.
//
// For legacy ASP.NET on IIS it also, per site (one file per concern):
//   - pins a client connection doing Windows authentication (NTLM,
//     Negotiate) to a dedicated upstream connection (winauth.go), and
//     offers HTTP/2 per site by its http2 mode: with auto, only HTTP/1.1
//     once a probe of the upstream's / at start and reload, or a client,
//     has met such a challenge, remembered across restarts in an
//     HTTP1OnlyStore (http2.go, http1only.go);
//   - rewrites Location, Content-Location and Refresh from internal origins
//     to the public one, adds Secure/HttpOnly/SameSite to cookies, and can
//     add upgrade-insecure-requests (headers.go);
//   - sets configured request headers, forwards the verified client
//     certificate as X-ARR-ClientCert and asks for it per SNI (clientauth.go);
//   - balances round-robin or least-connections with cookie affinity
//     (balance.go), health-checks actively and passively (health.go), and
//     retries on another upstream only when no connection could be made
//     (roundtrip.go);
//   - streams every body (WebSocket, server-sent events, uploads, downloads)
//     with idle-based timeouts only, and caps request bodies (middleware.go).
//
// For operations (access.go, metrics.go, reload.go) it writes one access log
// line per request (logger "access"; the query only for sites that set
// access_log_query), counts requests, handshakes, connections and upstream
// health in a Metrics collector, and applies a configuration reload to a
// running Server: the site table is swapped for the next request and
// changed listen addresses are rebound, without dropping a connection.
//
// It does not obtain, select or reload certificates, and does not choose the
// certificate for a TLS handshake: that is tlsmgr's job, through the
// *tls.Config handed to New (client TLS toward upstreams is built with
// tlsmgr.ClientTLSConfig). It does not validate configuration (configs
// does), and does not cache, compress, rewrite bodies, authenticate users or
// replay requests whose bytes reached an upstream.
package proxy
