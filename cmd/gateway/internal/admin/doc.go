// Package admin serves the gateway's operator endpoint (admin.listen):
// /healthz (the process is alive), /readyz (ready to take traffic, or 503
// with the reason), /metrics (Prometheus text format, from a private
// registry) and /certs (the certificates served, as JSON). It also builds
// that registry: the gateway's own process-level series plus the collectors
// that proxy, sqltunnel and tlsmgr expose.
//
// It lives under cmd/gateway because it is the binary's operator surface:
// only the wiring in cmd/gateway knows every part the readiness and the
// metrics are made of, no other package needs it, and internal keeps it out
// of the module's API. It is not part of proxy: the HTTPS front serves
// clients over TLS on public addresses, this endpoint serves operators in
// plain HTTP on loopback, and keeping them apart keeps that trust boundary
// visible.
//
// It does not compute readiness or certificate status itself (the caller
// passes functions for them), authenticate anyone (bind it to loopback), or
// use Prometheus's global default registry.
package admin
