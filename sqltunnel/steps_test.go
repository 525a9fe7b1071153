package sqltunnel

import (
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestLoginSteps: the "sql login" line says when each step of a login
// ended (steps_ms), in the order the session runs them: the upstream's
// PRELOGIN before the client's handshake ends, the client's LOGIN7 after
// it, the upstream's reply last; the upstream's TLS handshake is done by
// the time the session stops waiting for it. For TDS 8 there is no
// separate upstream PRELOGIN step before the client's handshake.
func TestLoginSteps(t *testing.T) {
	srv, caFile := upstreamDouble(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	g := startGateway(t, listenerConfig(srv.Addr(), caFile))
	for _, mode := range []string{"true", "strict"} {
		t.Run(mode, func(t *testing.T) {
			if err := selectOne(testCtx(t), g.open(t, map[string]string{"encrypt": mode})); err != nil {
				t.Fatal(err)
			}
			dialect := map[string]string{"true": "tds7", "strict": "tds8"}[mode]
			e := g.logs.waitMsg(t, "sql login", map[string]any{"outcome": "ok", "dialect": dialect})
			steps, ok := e.ContextMap()["steps_ms"].(map[string]any)
			if !ok {
				t.Fatalf("no steps_ms in %v", e.ContextMap())
			}
			at := func(name string) float64 {
				t.Helper()
				v, ok := steps[name].(float64)
				if !ok || v <= 0 {
					t.Fatalf("steps_ms.%s = %v, want a positive number of ms (steps %v)", name, steps[name], steps)
				}
				return v
			}
			client, login7, reply := at("client_tls"), at("login7"), at("login_reply")
			upTLS := at("upstream_tls")
			wait, _ := steps["upstream_wait"].(float64) // 0 when the upstream was ready first
			if !(client <= login7 && login7 <= reply) {
				t.Errorf("client_tls %v, login7 %v, login_reply %v: out of order", client, login7, reply)
			}
			if upTLS > login7+wait+1 { // 1 ms: the clocks are read on two goroutines
				t.Errorf("upstream_tls %v ended after the session stopped waiting (login7 %v + wait %v)", upTLS, login7, wait)
			}
			if pre, ok := steps["upstream_prelogin"].(float64); mode == "true" && (!ok || pre > client) {
				t.Errorf("upstream_prelogin %v, want it before client_tls %v", steps["upstream_prelogin"], client)
			}
		})
	}
}
