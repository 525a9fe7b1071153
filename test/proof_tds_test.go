package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// proofPacket frames payload as one TDS message of type typ.
func proofPacket(t *testing.T, typ tds.PacketType, payload []byte) []byte {
	t.Helper()
	b, err := tds.AppendPackets(nil, tds.Message{Type: typ, Status: tds.StatusEOM, Payload: payload}, tds.DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func proofPrelogin(t *testing.T, enc tds.Encryption) []byte {
	t.Helper()
	b, err := (&tds.Prelogin{Version: tds.Version{Major: 9}, Encryption: new(enc), InstOpt: []byte{0}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return proofPacket(t, tds.PacketPrelogin, b)
}

func proofLogin7(t *testing.T) []byte {
	t.Helper()
	b, err := (&tds.Login7Builder{UserName: proofSQLUser, Password: proofSQLPassword, Database: "master", AppName: "proof-raw", HostName: "proofhost", Library: "proof"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	return proofPacket(t, tds.PacketLogin7, b)
}

// proofReadPreloginAnswer reads the gateway's PRELOGIN answer.
func proofReadPreloginAnswer(t *testing.T, c net.Conn) *tds.Prelogin {
	t.Helper()
	m, err := tds.NewReader(c).ReadMessage(nil)
	if err != nil {
		t.Fatalf("reading the PRELOGIN answer: %v", err)
	}
	p, err := tds.ParsePrelogin(m.Payload)
	if err != nil {
		t.Fatalf("decoding the PRELOGIN answer: %v", err)
	}
	return p
}

// proofHostileCase is one piece of bad input for the live listener.
type proofHostileCase struct {
	name string
	// run talks to the gateway on c (a fresh TCP connection) and returns the
	// connection to read the gateway's last words from (c, or TLS over it).
	run func(t *testing.T, c *net.TCPConn) net.Conn
	// msgs are the log messages that may report it (each with the client's
	// address in "remote").
	msgs []string
	// wantError, when not 0, is the ERROR number the client must be sent.
	wantError int32
}

const (
	proofMsgMalformed      = "malformed TDS input; closing"
	proofMsgEnded          = "client connection ended"
	proofMsgClosed         = "client closed the connection"
	proofMsgTimedOut       = "client timed out; closing"
	proofMsgHandshakeFail  = "client TLS handshake failed; closing"
	proofMsgHandshakeSlow  = "client TLS handshake timed out; closing"
	proofMsgRefusedEncrypt = "client refused encryption; closing"
	proofMsgNotTDS         = "not a TDS client; closing"
	proofMsgLimit          = "connection limit reached; closing connection"
	proofMsgSQLLogin       = "sql login"
)

func proofHostileCases(t *testing.T, roots *x509.CertPool) []proofHostileCase {
	write := func(t *testing.T, c *net.TCPConn, b []byte, closeWrite bool) net.Conn {
		if _, err := c.Write(b); err != nil {
			t.Fatalf("write: %v", err)
		}
		if closeWrite {
			_ = c.CloseWrite()
		}
		return c
	}
	clientTLS := &tls.Config{RootCAs: roots, ServerName: proofSQLHost}
	tds7 := func(t *testing.T, c *net.TCPConn) *tls.Conn {
		write(t, c, proofPrelogin(t, tds.EncryptOn), false)
		proofReadPreloginAnswer(t, c)
		tc, err := tdstls.Client(context.Background(), c, clientTLS)
		if err != nil {
			t.Fatalf("TLS inside PRELOGIN: %v", err)
		}
		return tc
	}
	overlap := []byte{0x00, 0, 11, 0, 6, 0x01, 0, 11, 0, 1, 0xFF, 1, 0, 0, 0, 0, 0}
	outOfRange := []byte{0x00, 0, 11, 0, 6, 0x01, 0x7F, 0xF0, 0, 1, 0xFF, 9, 0, 0, 0, 0, 0}
	return []proofHostileCase{
		{name: "truncated_header", msgs: []string{proofMsgEnded, proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn { return write(t, c, []byte{0x12, 0x01, 0x00}, true) }},
		{name: "length_below_8", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, []byte{0x12, 0x01, 0x00, 0x04, 0, 0, 1, 0}, false)
			}},
		{name: "length_beyond_data", msgs: []string{proofMsgEnded, proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, append([]byte{0x12, 0x01, 0x01, 0x00, 0, 0, 1, 0}, make([]byte, 20)...), true)
			}},
		{name: "claimed_size_65535", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, []byte{0x12, 0x01, 0xFF, 0xFF, 0, 0, 1, 0}, false)
			}},
		{name: "claimed_size_32768", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, []byte{0x12, 0x01, 0x80, 0x00, 0, 0, 1, 0}, false)
			}},
		{name: "login7_before_prelogin", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn { return write(t, c, proofLogin7(t), false) }},
		{name: "prelogin_overlapping_offsets", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, proofPacket(t, tds.PacketPrelogin, overlap), false)
			}},
		{name: "prelogin_offset_out_of_range", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, proofPacket(t, tds.PacketPrelogin, outOfRange), false)
			}},
		{name: "garbage_in_tls_handshake", msgs: []string{proofMsgHandshakeFail},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				write(t, c, proofPrelogin(t, tds.EncryptOn), false)
				proofReadPreloginAnswer(t, c)
				garbage := []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0xDE, 0xAD, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF}
				return write(t, c, proofPacket(t, tds.PacketPrelogin, garbage), false)
			}},
		{name: "clear_login7_after_encryption_required", msgs: []string{proofMsgRefusedEncrypt},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				write(t, c, proofPrelogin(t, tds.EncryptNotSup), false)
				if a := proofReadPreloginAnswer(t, c); a.Encryption == nil || a.Encryption.Mode() != tds.EncryptReq {
					t.Errorf("answer to NOT_SUP: %v, want REQ", a.Encryption)
				}
				return write(t, c, proofLogin7(t), false)
			}},
		{name: "never_finishes_handshake", msgs: []string{proofMsgHandshakeSlow, proofMsgTimedOut},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				write(t, c, proofPrelogin(t, tds.EncryptOn), false)
				proofReadPreloginAnswer(t, c)
				return c // and say nothing more
			}},
		{name: "stalls_inside_header", msgs: []string{proofMsgTimedOut},
			run: func(t *testing.T, c *net.TCPConn) net.Conn { return write(t, c, []byte{0x12, 0x01}, false) }},
		{name: "oversized_packet_inside_tls", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				tc := tds7(t, c)
				_, _ = tc.Write([]byte{0x10, 0x01, 0xFF, 0xFF, 0, 0, 1, 0})
				return tc
			}},
		{name: "prelogin_again_inside_tls", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				tc := tds7(t, c)
				_, _ = tc.Write(proofPrelogin(t, tds.EncryptOn))
				return tc
			}},
		{name: "undecodable_login7", msgs: []string{proofMsgSQLLogin}, wantError: 50907,
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				tc := tds7(t, c)
				login := proofLogin7(t)
				login[8+36], login[8+37] = 0xFF, 0xFF // HostName offset far outside
				_, _ = tc.Write(login)
				return tc
			}},
		{name: "tds8_wrong_alpn", msgs: []string{proofMsgHandshakeFail},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				conf := clientTLS.Clone()
				conf.NextProtos = []string{"h2"}
				tc := tls.Client(c, conf)
				if err := tc.Handshake(); err == nil {
					t.Error("a TLS-first handshake offering only ALPN h2 succeeded")
				}
				return c
			}},
		{name: "tds8_garbage_inside_tls", msgs: []string{proofMsgMalformed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				conf := clientTLS.Clone()
				conf.NextProtos = []string{"tds/8.0"}
				tc := tls.Client(c, conf)
				if err := tc.Handshake(); err != nil {
					t.Fatalf("TDS 8 handshake: %v", err)
				}
				_, _ = tc.Write([]byte("this is not TDS at all, just text inside TLS"))
				return tc
			}},
		{name: "tls_client_hello_truncated", msgs: []string{proofMsgHandshakeFail, proofMsgEnded, proofMsgClosed},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03}, true)
			}},
		{name: "http_request", msgs: []string{proofMsgNotTDS},
			run: func(t *testing.T, c *net.TCPConn) net.Conn {
				return write(t, c, []byte("GET / HTTP/1.1\r\nHost: sql\r\n\r\n"), false)
			}},
	}
}

// TestProofHostileTDS sends malformed, out-of-order, truncated, stalled
// and flooding input to the TDS listener of the real binary: each
// connection ends in a close (or a TDS ERROR where the protocol allows
// one) and a log line naming the client; nothing reaches the upstream as a
// login; afterwards a normal client is served and the gateway's open
// descriptors are back to their baseline.
func TestProofHostileTDS(t *testing.T) {
	t.Parallel()
	row := proofRow(t, "hostile TDS input on the live SQL listener")
	const maxConns = 24
	backend := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	cfg := newProofSQLConfig(t, "required", backend.addr(), backend.caFile)
	cfg.SQL[0].MaxConnections = maxConns
	cfg.Admin.Listen = "127.0.0.1:0" // for go_goroutines on /metrics
	g := startProofGateway(t, cfg)
	roots := testpki.MustPoolOf(t, g.rootPEM)
	dsn := proofDSN(g.sqlAddr, g.rootFile, "true")

	// Baseline: after one normal login, once the gateway has closed both
	// of its legs.
	if err := proofSelect(proofCtx(t, 2*time.Minute), t, dsn); err != nil {
		t.Fatalf("normal client before the hostile input: %v", err)
	}
	proofWaitUpstreamIdle(t, backend, 1)
	baseFDs, baseThreads := proofFDs(t, g.proc), proofThreads(g.proc)
	baseGoroutines, haveGoroutines := proofGoroutines(t, g)

	cases := proofHostileCases(t, roots)
	var closedOK atomic.Int32
	t.Run("inputs", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				// The handshake timeout (15 s, not configurable) bounds the
				// stalled cases; a minute is generous on a shared machine.
				c := proofDialTCP(t, g.sqlAddr, 90*time.Second)
				local := c.LocalAddr().String()
				last := tc.run(t, c)
				if tc.wantError != 0 {
					if n := proofReadTDSError(t, last); n != tc.wantError {
						t.Errorf("ERROR number %d, want %d", n, tc.wantError)
					}
				}
				if err := proofExpectClosed(last); err != nil {
					t.Fatalf("the gateway did not close the connection: %v", err)
				}
				g.waitLog(t, 90*time.Second, fmt.Sprintf("a line naming %s (%v)", local, tc.msgs), func(_ string, e logEntry) bool {
					return e.str("remote") == local && slices.Contains(tc.msgs, e.str("msg"))
				})
				closedOK.Add(1)
			})
		}
	})

	// A flood: maxConns connections hold their slots (each got its
	// PRELOGIN answer, so it was accepted first), then more arrive; each
	// extra one is closed at once and logged with its address.
	var floodRefused, heldFDs, heldGoroutines int
	t.Run("flood", func(t *testing.T) {
		holders := make([]*net.TCPConn, maxConns)
		for i := range holders {
			holders[i] = proofDialTCP(t, g.sqlAddr, 90*time.Second)
			if _, err := holders[i].Write(proofPrelogin(t, tds.EncryptOn)); err != nil {
				t.Fatal(err)
			}
			proofReadPreloginAnswer(t, holders[i])
		}
		// Negative control of the descriptor check: the held connections
		// (client and upstream sockets) must show in the count.
		if n := proofFDs(t, g.proc); n < baseFDs+maxConns {
			t.Errorf("%d descriptors with %d connections held (baseline %d): the leak check cannot see connections", n, maxConns, baseFDs)
		} else {
			heldFDs = n
		}
		// Each held session has at least its serving goroutine (the
		// baseline itself moves by a few).
		if n, ok := proofGoroutines(t, g); ok && n < baseGoroutines+maxConns/2 {
			t.Errorf("%d goroutines with %d connections held (baseline %d): the leak check cannot see sessions", n, maxConns, baseGoroutines)
		} else {
			heldGoroutines = n
		}
		const extra = 40
		var wg sync.WaitGroup
		locals := make([]string, extra)
		errs := make([]error, extra)
		for i := range extra {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", g.sqlAddr, 10*time.Second)
				if err != nil {
					errs[i] = err
					return
				}
				defer c.Close()
				locals[i] = c.LocalAddr().String()
				// Well before the 15 s handshake timeout: refused, not
				// timed out.
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = c.Write(proofPrelogin(t, tds.EncryptOn))
				errs[i] = proofExpectClosed(c)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("extra connection %d: %v", i, err)
				continue
			}
			g.waitLog(t, 30*time.Second, "the limit line for "+locals[i], func(_ string, e logEntry) bool {
				return e.str("msg") == proofMsgLimit && e.str("remote") == locals[i]
			})
			floodRefused++
		}
		// Release the slots, and wait until the gateway has noticed each
		// one (a line naming it), so that the next client is not refused.
		mark := g.mark()
		for _, h := range holders {
			local := h.LocalAddr().String()
			_ = h.Close()
			g.waitLogAfter(t, mark, 60*time.Second, "the end of held connection "+local, func(_ string, e logEntry) bool {
				return e.str("remote") == local
			})
		}
	})

	// Afterwards: a normal client is served, nothing logged in upstream
	// but the two normal clients, and the descriptors return to baseline.
	// (A session logs its end just before it frees its slot: a client
	// racing that instant may still be over the limit, hence eventually.)
	testkit.Eventually(t, time.Minute, "a normal client served after the hostile input", func() error {
		return proofSelect(proofCtx(t, 2*time.Minute), t, dsn)
	})
	proofWaitUpstreamIdle(t, backend, 2)
	logins := 0
	for _, r := range backend.srv.Sessions() {
		if r.LoggedIn {
			logins++
		}
	}
	if logins != 2 {
		t.Errorf("the upstream saw %d logins, want 2 (the normal clients only)", logins)
	}
	var fds int
	testkit.Eventually(t, 60*time.Second, "descriptors back to the baseline", func() error {
		if fds = proofFDs(t, g.proc); fds > baseFDs {
			return fmt.Errorf("%d open descriptors, baseline %d", fds, baseFDs)
		}
		return nil
	})
	goroutines := "n/a (no admin endpoint)"
	if haveGoroutines {
		// A few goroutines of slack: certmagic and the runtime start and
		// end their own; a leaked session would hold two or more each.
		var n int
		testkit.Eventually(t, 60*time.Second, "goroutines back to the baseline", func() error {
			if n, _ = proofGoroutines(t, g); n > baseGoroutines+3 {
				return fmt.Errorf("%d goroutines, baseline %d", n, baseGoroutines)
			}
			return nil
		})
		goroutines = fmt.Sprintf("%d→%d (%d while held)", baseGoroutines, n, heldGoroutines)
	}
	proofNoPanic(t, g.proc)
	row.set("%d/%d hostile connections closed + logged naming the client; flood: %d/40 over max_connections=%d refused at once + logged; normal client OK after; goroutines %s, fds %d→%d (%d while %d held), threads %d→%d",
		closedOK.Load(), len(cases), floodRefused, maxConns, goroutines, baseFDs, fds, heldFDs, maxConns, baseThreads, proofThreads(g.proc))
}

// proofWaitUpstreamIdle waits until the double has no live session and at least
// logins logged-in sessions have ended.
func proofWaitUpstreamIdle(t *testing.T, b *proofSQLBackend, logins int) {
	t.Helper()
	_, err := b.srv.Wait(proofCtx(t, time.Minute), func(rs []tdstest.SessionRecord) bool {
		n := 0
		for _, r := range rs {
			if r.Outcome == tdstest.OutcomeActive {
				return false
			}
			if r.LoggedIn {
				n++
			}
		}
		return n >= logins
	})
	if err != nil {
		t.Fatalf("upstream sessions did not end: %v (%+v)", err, b.srv.Sessions())
	}
}

// proofReadTDSError reads one reply message and returns the first ERROR number.
func proofReadTDSError(t *testing.T, c net.Conn) int32 {
	t.Helper()
	m, err := tds.NewReader(c).ReadMessage(nil)
	if err != nil {
		t.Errorf("reading the reply: %v", err)
		return 0
	}
	sc := tds.NewTokenScanner(m.Payload, 0)
	for sc.Scan() {
		if tok := sc.Token(); tok.Type == tds.TokenError {
			if e, err := tds.ParseErrorInfo(tok.Raw); err == nil {
				return e.Number
			}
		}
	}
	return 0
}

// proofExpectClosed reads until the peer closes the connection: nil for EOF or a
// reset, an error for a timeout (the peer kept it open).
func proofExpectClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	var ne net.Error
	switch {
	case err == nil:
		return nil // EOF
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open at the deadline: %w", err)
	}
	return nil // reset, or a TLS alert: closed either way
}

// proofNoPanic fails if the process logged a recovered panic.
func proofNoPanic(t *testing.T, p *proc) {
	t.Helper()
	for _, line := range p.stderr.all() {
		if strings.Contains(line, "panic") {
			t.Errorf("%s logged a panic: %s", p.name, line)
		}
	}
}
