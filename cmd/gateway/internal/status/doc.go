// Package status is what the running gateway says about itself beyond
// Prometheus text: the snapshot behind the admin endpoint's /status.json
// and its HTML status page at /, and the per-minute history both draw
// from.
//
// A History samples selected counters of the process's Prometheus registry
// (logins by the TLS of both legs and outcome, refusals by error number,
// connections that ended before a login, HTTPS requests by status class
// and TLS version, failed handshakes) once a minute and keeps a day of
// them, so that /status.json?since=D answers "what happened in the last D"
// with measured figures, and says over which span they were measured when
// the process is younger than D. The page is drawn with html/template and
// inline SVG, needs no external asset or script, and refreshes itself.
//
// It does not decide whether anything is compliant (`gateway audit` does,
// from this snapshot among other things), keep anything across restarts,
// or replace Prometheus for long-term storage.
package status
