package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// mitmRelay is a hostile TCP relay between the gateway and its SQL
// upstream: it records every byte the gateway sends (and what it is sent
// back) and, depending on its mode, tampers with the exchange.
type mitmRelay struct {
	ln     net.Listener
	target string
	mode   mitmMode
	cert   *tls.Certificate // for mitmOwnCert

	mu    sync.Mutex
	conns []*mitmConn
	wg    sync.WaitGroup
}

type mitmMode int

const (
	mitmPass         mitmMode = iota // relay unchanged (the control)
	mitmAnswerOff                    // rewrite the server's PRELOGIN ENCRYPTION to OFF (login-only)
	mitmAnswerNone                   // rewrite it to NOT_SUP (no encryption)
	mitmOwnCert                      // answer PRELOGIN itself and run TLS with its own, untrusted certificate
	mitmTLSFirst                     // answer a TDS 8 ClientHello with a TDS 7.x PRELOGIN answer (no TLS)
	mitmTLSFirstCert                 // terminate TDS 8 TLS itself with its own, untrusted certificate
)

// mitmConn is one relayed connection: fromGW is what the gateway sent.
type mitmConn struct {
	mu     sync.Mutex
	fromGW bytes.Buffer
	toGW   bytes.Buffer
	done   chan struct{}
}

func (c *mitmConn) recordFromGW(b []byte) {
	c.mu.Lock()
	c.fromGW.Write(b)
	c.mu.Unlock()
}

func (c *mitmConn) recordToGW(b []byte) {
	c.mu.Lock()
	c.toGW.Write(b)
	c.mu.Unlock()
}

func (c *mitmConn) bytes() (fromGW, toGW []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.fromGW.Bytes()), bytes.Clone(c.toGW.Bytes())
}

func newMITMRelay(t *testing.T, target string, mode mitmMode, cert *tls.Certificate) *mitmRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &mitmRelay{ln: ln, target: target, mode: mode, cert: cert}
	r.wg.Go(r.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *mitmRelay) addr() string { return r.ln.Addr().String() }

func (r *mitmRelay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		mc := &mitmConn{done: make(chan struct{})}
		r.mu.Lock()
		r.conns = append(r.conns, mc)
		r.mu.Unlock()
		r.wg.Go(func() {
			defer close(mc.done)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			r.serve(mc, &recordingConn{Conn: c, mc: mc})
		})
	}
}

// recordingConn records what the gateway sends and what it is sent.
type recordingConn struct {
	net.Conn
	mc *mitmConn
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mc.recordFromGW(p[:n])
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mc.recordToGW(p)
	return c.Conn.Write(p)
}

func (r *mitmRelay) serve(mc *mitmConn, gw *recordingConn) {
	switch r.mode {
	case mitmOwnCert:
		// Play the server: answer PRELOGIN with ON, then TLS inside
		// PRELOGIN with a certificate the gateway does not trust.
		if _, err := tds.NewReader(gw).ReadMessage(nil); err != nil {
			return
		}
		proofWritePreloginAnswer(gw, tds.EncryptOn)
		_, _ = tdstls.Server(context.Background(), gw, &tls.Config{Certificates: []tls.Certificate{*r.cert}})
		_, _ = io.Copy(io.Discard, gw)
		return
	case mitmTLSFirst:
		// The gateway starts TLS (strict upstream); pretend to be an old
		// server and answer with a clear PRELOGIN, encryption OFF.
		buf := make([]byte, 4096)
		if _, err := gw.Read(buf); err != nil {
			return
		}
		proofWritePreloginAnswer(gw, tds.EncryptOff)
		_, _ = io.Copy(io.Discard, gw)
		return
	case mitmTLSFirstCert:
		tc := tls.Server(gw, &tls.Config{Certificates: []tls.Certificate{*r.cert}, NextProtos: []string{"tds/8.0"}})
		_ = tc.Handshake()
		_, _ = io.Copy(io.Discard, gw)
		return
	}
	up, err := net.DialTimeout("tcp", r.target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		_, _ = io.Copy(up, gw) // gateway -> upstream, recorded by gw.Read
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	if r.mode == mitmAnswerOff || r.mode == mitmAnswerNone {
		enc := tds.EncryptOff
		if r.mode == mitmAnswerNone {
			enc = tds.EncryptNotSup
		}
		m, err := tds.NewReader(up).ReadMessage(nil)
		if err != nil {
			return
		}
		p, err := tds.ParsePrelogin(m.Payload)
		if err != nil {
			return
		}
		p.Encryption = new(enc)
		payload, _ := p.MarshalBinary()
		_ = tds.NewWriter(gw).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: payload})
	}
	_, _ = io.Copy(gw, up) // upstream -> gateway, recorded by gw.Write
}

func proofWritePreloginAnswer(w io.Writer, enc tds.Encryption) {
	payload, _ := (&tds.Prelogin{Version: tds.Version{Major: 16}, Encryption: new(enc), InstOpt: []byte{0}}).MarshalBinary()
	_ = tds.NewWriter(w).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: payload})
}

// captures waits until every relayed connection has ended (at least n)
// and returns them.
func (r *mitmRelay) captures(t *testing.T, n int) []*mitmConn {
	t.Helper()
	var conns []*mitmConn
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("%d relayed connections", n), func() error {
		r.mu.Lock()
		conns = slices.Clone(r.conns)
		r.mu.Unlock()
		if len(conns) < n {
			return fmt.Errorf("%d connections so far", len(conns))
		}
		return nil
	})
	for _, c := range conns {
		select {
		case <-c.done:
		case <-time.After(90 * time.Second):
			t.Fatal("a relayed connection did not end")
		}
	}
	return conns
}

// TestProofDowngrade puts a hostile relay between the gateway and the SQL
// upstream. Whatever it does — answer PRELOGIN with OFF (login-only) or
// NOT_SUP, present its own certificate, strip TDS 8's TLS, or let the
// gateway offer TDS 7.x to a strict server — the client gets a TDS ERROR
// and the login never leaves the gateway in clear: the relay's capture of
// what the gateway sent holds no LOGIN7 packet in clear and no form of the
// password or the query. The pass-through relay is the control: the login
// succeeds through it, and its capture is clean too.
func TestProofDowngrade(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "downgrade and MITM between gateway and SQL upstream")
	rogueCert, _, err := tdstest.NewCertificate("localhost", "127.0.0.1") // right name, untrusted CA
	if err != nil {
		t.Fatal(err)
	}
	proofSecrets := append(proofWireForms("password", proofSQLPassword, true), proofWireForms("query", proofQuery, false)...)

	cases := []struct {
		name       string
		upstream   tdstest.Encryption // the real server's setting
		upEncrypt  string             // the gateway's upstream.encryption
		mode       mitmMode
		wantErrors []int32 // acceptable ERROR numbers; nil: the login succeeds
	}{
		{name: "control_pass_through", upstream: tdstest.EncryptForced, upEncrypt: "required", mode: mitmPass},
		{name: "control_pass_through_strict", upstream: tdstest.EncryptStrict, upEncrypt: "strict", mode: mitmPass},
		{name: "answer_off_login_only", upstream: tdstest.EncryptForced, upEncrypt: "required", mode: mitmAnswerOff, wantErrors: []int32{50903}},
		{name: "answer_not_sup", upstream: tdstest.EncryptForced, upEncrypt: "required", mode: mitmAnswerNone, wantErrors: []int32{50903}},
		{name: "untrusted_certificate", upstream: tdstest.EncryptForced, upEncrypt: "required", mode: mitmOwnCert, wantErrors: []int32{50904}},
		{name: "strict_stripped_to_tds7", upstream: tdstest.EncryptStrict, upEncrypt: "strict", mode: mitmTLSFirst, wantErrors: []int32{50904, 50905}},
		{name: "strict_untrusted_certificate", upstream: tdstest.EncryptStrict, upEncrypt: "strict", mode: mitmTLSFirstCert, wantErrors: []int32{50904}},
		{name: "strict_server_offered_tds7", upstream: tdstest.EncryptStrict, upEncrypt: "required", mode: mitmPass, wantErrors: []int32{50903, 50905}},
	}
	var refused, controls sync.Map
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend := newProofSQLBackend(t, tdstest.Config{Encryption: tc.upstream})
			relay := newMITMRelay(t, backend.addr(), tc.mode, &rogueCert)
			cfg := newProofSQLConfig(t, "required", relay.addr(), backend.caFile)
			cfg.SQL[0].Upstream.Encryption = tc.upEncrypt
			g := startProofGateway(t, cfg)

			err := proofSelect(proofCtx(t, 2*time.Minute), t, proofDSN(g.sqlAddr, g.rootFile, "true"))
			switch {
			case tc.wantErrors == nil && err != nil:
				t.Fatalf("through the pass-through relay: %v", err)
			case tc.wantErrors == nil:
				controls.Store(tc.name, true)
			case err == nil:
				t.Fatal("the login succeeded through the hostile relay")
			case !slices.Contains(tc.wantErrors, proofErrorNumber(err)):
				t.Fatalf("error %v (number %d), want a TDS ERROR numbered %v", err, proofErrorNumber(err), tc.wantErrors)
			default:
				refused.Store(tc.name, proofErrorNumber(err))
			}

			total := 0
			for _, c := range relay.captures(t, 1) {
				fromGW, _ := c.bytes()
				total += len(fromGW)
				rep := proofAnalyzeLeg(fromGW)
				if len(rep.violations) > 0 {
					t.Errorf("the gateway sent in clear: %s", rep)
				}
				if hits := proofFind(fromGW, proofSecrets); len(hits) > 0 {
					t.Errorf("the gateway sent %v in clear to the relay", hits)
				}
				if tc.wantErrors == nil && rep.tlsRecords == 0 {
					t.Errorf("control: no TLS seen on the relayed leg (%s): the capture proves nothing", rep)
				}
			}
			t.Logf("%s: %d bytes captured from the gateway", tc.name, total)
			if tc.wantErrors != nil {
				for _, r := range backend.srv.Sessions() {
					if r.LoggedIn || r.LoginPackets != 0 || r.User != "" {
						t.Errorf("the upstream received a login (session %d, user %q)", r.ID, r.User)
					}
				}
				g.waitLog(t, 30*time.Second, "the refused login's audit line", func(_ string, e logEntry) bool {
					return e.str("msg") == proofMsgSQLLogin && e.str("outcome") == "upstream_error"
				})
			}
		})
	}
	t.Cleanup(func() {
		var parts []string
		refused.Range(func(k, v any) bool {
			parts = append(parts, fmt.Sprintf("%s→%d", k, v))
			return true
		})
		slices.Sort(parts)
		n := 0
		controls.Range(func(any, any) bool { n++; return true })
		row.set("%d/%d attacks refused with a TDS ERROR (%s); 0 LOGIN7/password/query bytes in clear on the relayed leg; %d/2 pass-through controls log in",
			len(parts), len(cases)-2, strings.Join(parts, ", "), n)
	})
}
