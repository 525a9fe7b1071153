//go:build unix

package sqltunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
)

// FuzzListenerSession drives the listener's whole connection state machine
// (dialect by first byte, PRELOGIN, TLS inside PRELOGIN or TLS first,
// LOGIN7, login reply, relay) with fuzzed bytes, in memory: the client leg
// and the upstream leg are socketpairs (kernel buffers, half-close,
// deadlines, no ports), the upstream a small fake SQL Server.
//
// The inputs are the mode, two client byte strings and the upstream's reply
// to LOGIN7. Mode bits 0-1 pick how the client sends them: 0 both in clear;
// 1 first in clear as PRELOGIN, then, if the gateway answered with a
// PRELOGIN asking for TLS, a real TDS 7.x TLS handshake and the second
// inside it; 2 a real TDS 8 handshake (ALPN tds/8.0) and both inside it.
// Bits 2-3 pick the listener's client_encryption (required, strict,
// allow_plaintext_loopback); bit 4 makes the client appear on loopback.
// An empty upstream reply means a well-formed LOGINACK.
//
// Properties: the session never panics (the recovers log "panic"), always
// ends within its deadlines, frees its connection slot, never leaves a
// goroutine of the fake upstream behind, and the upstream never sees a
// LOGIN7 unless the client's leg was encrypted (or plain under
// allow_plaintext_loopback from loopback).
func FuzzListenerSession(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzListenerSession (sessionSeeds).
	h := newSessionFuzzHarness(f)
	f.Fuzz(func(t *testing.T, mode byte, c1, c2, up []byte) {
		h.run(t, mode, c1, c2, up)
	})
}

type sessionFuzzHarness struct {
	listeners [3]*Listener // by client_encryption
	obs       *observer.ObservedLogs
	clientTLS *tls.Config
	upCert    tls.Certificate
	upReply   atomic.Pointer[[]byte]
	upLogin   atomic.Int64 // LOGIN7 messages the fake upstream received
	upWG      sync.WaitGroup
}

const fuzzUpstreamName = "upstream.fuzz.test"

func newSessionFuzzHarness(f *testing.F) *sessionFuzzHarness {
	gwCert, gwRoot, err := tdstest.NewCertificate(gwHost, "127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	upCert, upRoot, err := tdstest.NewCertificate(fuzzUpstreamName)
	if err != nil {
		f.Fatal(err)
	}
	gwPool, upPool := x509.NewCertPool(), x509.NewCertPool()
	gwPool.AppendCertsFromPEM(gwRoot)
	upPool.AppendCertsFromPEM(upRoot)

	h := &sessionFuzzHarness{
		clientTLS: &tls.Config{RootCAs: gwPool, ServerName: gwHost, MinVersion: tls.VersionTLS12},
		upCert:    upCert,
	}
	// Only Error entries are kept: a panic recovered anywhere is logged at
	// Error with "panic" in the message.
	core, obs := observer.New(zapcore.ErrorLevel)
	h.obs = obs
	serverTLS := func(p ...string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{gwCert}, MinVersion: tls.VersionTLS12, NextProtos: p}
	}
	for i, policy := range []configs.ClientEncryption{configs.ClientEncryptionRequired, configs.ClientEncryptionStrict, configs.ClientEncryptionAllowPlaintextLoopback} {
		cfg := listenerConfig("127.0.0.1:1433", "")
		cfg.ClientEncryption = policy
		cfg.Upstream.ServerName = fuzzUpstreamName
		l, err := New(cfg, serverTLS, zap.New(core),
			WithUpstreamTLS(&tls.Config{RootCAs: upPool, ServerName: fuzzUpstreamName, MinVersion: tls.VersionTLS12}),
			WithDialer(dialFunc(h.dialUpstream)),
			WithHandshakeTimeout(2*time.Second),
			WithLoginTimeout(2*time.Second),
			WithDialTimeout(2*time.Second))
		if err != nil {
			f.Fatal(err)
		}
		h.listeners[i] = l
	}
	return h
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (d dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d(ctx, network, addr)
}

// socketPair returns two connected stream sockets, both *net.UnixConn.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		_ = f.Close() // FileConn dups the descriptor
		if err != nil {
			if i == 1 {
				_ = conns[0].Close()
			} else {
				_ = syscall.Close(fds[1])
			}
			return nil, nil, err
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

// loopbackConn makes a socketpair end look like a TCP client on loopback,
// for the allow_plaintext_loopback branch.
type loopbackConn struct{ net.Conn }

func (loopbackConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}

func (c loopbackConn) CloseWrite() error { return c.Conn.(*net.UnixConn).CloseWrite() }

// dialUpstream connects the gateway to a fresh fake upstream.
func (h *sessionFuzzHarness) dialUpstream(ctx context.Context, _, _ string) (net.Conn, error) {
	gwSide, upSide, err := socketPair()
	if err != nil {
		return nil, err
	}
	reply := h.upReply.Load()
	h.upWG.Go(func() { h.serveUpstream(upSide, *reply) })
	// The upstream is "on loopback" too, for disabled_loopback's check.
	return loopbackConn{gwSide}, nil
}

// serveUpstream is a minimal SQL Server forcing encryption: PRELOGIN
// answered ON, TLS inside PRELOGIN, then LOGIN7 answered either with reply
// and the end of the stream, or (reply empty) with a LOGINACK and a DONE
// for every request until the gateway closes.
func (h *sessionFuzzHarness) serveUpstream(c net.Conn, reply []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := tds.NewReader(c)
	if _, err := r.ReadMessage(nil); err != nil {
		return
	}
	answer, _ := (&tds.Prelogin{Version: tds.Version{Major: 16}, Encryption: new(tds.EncryptOn), InstOpt: []byte{0}}).MarshalBinary()
	if tds.NewWriter(c).WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: answer}) != nil {
		return
	}
	tc, err := tdstls.Server(context.Background(), c, &tls.Config{Certificates: []tls.Certificate{h.upCert}})
	if err != nil {
		return
	}
	r, w := tds.NewReader(tc), tds.NewWriter(tc)
	_ = r.SetMaxPacketSize(tds.MaxPacketSize)
	m, err := r.ReadMessage(nil)
	if err != nil {
		return
	}
	if m.Type == tds.PacketLogin7 {
		h.upLogin.Add(1)
	}
	if len(reply) == 0 {
		var rb tds.ReplyBuilder
		rb.LoginAck(tds.LoginAck{Interface: 1, TDSVersion: tds.TDS74, ProgName: "fuzz", ProgVersion: tds.Version{Major: 16}})
		rb.EnvPacketSize(4096, 4096)
		rb.Done(tds.Done{})
		reply, _ = rb.Bytes()
		if w.WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: reply}) != nil {
			return
		}
	} else {
		// A fuzzed reply, then the end of the stream: a truncated reply
		// must end in EOF at once, not in the gateway's login timeout.
		_, _ = tc.Write(reply)
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, tc)
		return
	}
	var rb tds.ReplyBuilder
	rb.Done(tds.Done{})
	done, _ := rb.Bytes()
	for {
		if _, err := r.ReadMessage(nil); err != nil {
			_ = tc.CloseWrite()
			return
		}
		if w.WriteMessage(tds.Message{Type: tds.PacketReply, Status: tds.StatusEOM, Payload: done}) != nil {
			return
		}
	}
}

func (h *sessionFuzzHarness) run(t *testing.T, mode byte, c1, c2, up []byte) {
	l := h.listeners[int(mode>>2&3)%3]
	h.upReply.Store(&up)
	loginsBefore := h.upLogin.Load()
	errorsBefore := len(h.obs.All())

	gwSide, clientSide, err := socketPair()
	if err != nil {
		t.Skip("socketpair:", err) // out of descriptors: not the code's fault
	}
	var serverConn net.Conn = gwSide
	if mode&0x10 != 0 {
		serverConn = loopbackConn{gwSide}
	}
	l.start(context.Background(), serverConn)
	served := make(chan struct{})
	go func() { l.wg.Wait(); close(served) }()

	encrypted := h.client(clientSide, mode&3, c1, c2)
	_ = clientSide.Close()

	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the session did not end within 30s of the client closing")
	}
	upDone := make(chan struct{})
	go func() { h.upWG.Wait(); close(upDone) }()
	select {
	case <-upDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the fake upstream's connection was not closed by the gateway")
	}
	for _, e := range h.obs.All()[errorsBefore:] {
		t.Errorf("error logged: %s %v", e.Message, e.ContextMap())
	}
	if n := l.active.Load(); n != 0 {
		t.Fatalf("%d connection slots still taken after the session ended", n)
	}
	plainAllowed := l.cfg.ClientEncryption == configs.ClientEncryptionAllowPlaintextLoopback && mode&0x10 != 0
	if h.upLogin.Load() != loginsBefore && !encrypted && !plainAllowed {
		t.Fatal("the upstream received a LOGIN7 although the client never completed TLS")
	}
}

// client plays the client side and reports whether its leg got encrypted.
func (h *sessionFuzzHarness) client(c net.Conn, how byte, c1, c2 []byte) (encrypted bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	switch how {
	case 1: // TDS 7.x: PRELOGIN in clear, then TLS inside PRELOGIN if asked
		if _, err := c.Write(c1); err != nil {
			break
		}
		r := tds.NewReader(c)
		m, err := r.ReadMessage(nil)
		if err != nil || m.Type != tds.PacketReply {
			break
		}
		answer, err := tds.ParsePrelogin(m.Payload)
		if err != nil {
			break
		}
		if answer.Encryption != nil && answer.Encryption.Mode() == tds.EncryptNotSup {
			_, _ = c.Write(c2)
			break
		}
		tc, err := tdstls.Client(ctx, c, h.clientTLS)
		if err != nil {
			break
		}
		encrypted = true
		_, _ = tc.Write(c2)
		_ = tc.CloseWrite()
		drain(tc)
		return encrypted
	case 2: // TDS 8: TLS first
		conf := h.clientTLS.Clone()
		conf.NextProtos = []string{alpnTDS8}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			break
		}
		encrypted = true
		_, _ = tc.Write(c1)
		_, _ = tc.Write(c2)
		_ = tc.CloseWrite()
		drain(tc)
		return encrypted
	default: // everything in clear
		go func() {
			_, _ = c.Write(c1)
			_, _ = c.Write(c2)
			_ = c.(*net.UnixConn).CloseWrite()
		}()
		drain(c)
		return false
	}
	// The handshake did not happen: stop sending, read what is left.
	_ = c.(*net.UnixConn).CloseWrite()
	drain(c)
	return encrypted
}

// drain reads what the gateway sends until it closes (or 4 MiB, or the
// deadline).
func drain(r io.Reader) {
	_, _ = io.CopyN(io.Discard, r, 4<<20)
}

type sessionSeed struct {
	mode       byte
	c1, c2, up []byte
}

// Mode bits of FuzzListenerSession, for the seeds.
const (
	seedClear    = 0
	seedTDS7     = 1
	seedTDS8     = 2
	seedStrict   = 1 << 2
	seedPlainOK  = 2 << 2
	seedLoopback = 0x10
)

// sessionSeeds are the hostile and the well-behaved conversations the
// corpus starts from, by file name in testdata/fuzz/FuzzListenerSession.
func sessionSeeds(f testing.TB) map[string]sessionSeed {
	pkt := func(typ tds.PacketType, payload []byte) []byte {
		b, err := tds.AppendPackets(nil, tds.Message{Type: typ, Status: tds.StatusEOM, Payload: payload}, tds.DefaultPacketSize)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	prelogin := func(enc tds.Encryption) []byte {
		b, err := (&tds.Prelogin{Version: tds.Version{Major: 9}, Encryption: new(enc), InstOpt: []byte{0}, ThreadID: new(uint32(7)), MARS: new(false)}).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		return pkt(tds.PacketPrelogin, b)
	}
	lb := tds.Login7Builder{UserName: testUser, Password: testPass, Database: testDB, AppName: "fuzz", HostName: "fuzzhost", Library: "fuzz", PacketSize: 4096}
	loginPayload, err := lb.Build()
	if err != nil {
		f.Fatal(err)
	}
	login := pkt(tds.PacketLogin7, loginPayload)
	badLogin := append([]byte(nil), loginPayload...)
	badLogin[36], badLogin[37] = 0xFF, 0xFF
	batch := pkt(tds.PacketSQLBatch, append([]byte{0x16, 0, 0, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, []byte("S\x00E\x00L\x00E\x00C\x00T\x00 \x001\x00")...))
	attention := []byte{0x06, 0x01, 0x00, 0x08, 0, 0, 1, 0}
	reply := func(build func(*tds.ReplyBuilder)) []byte {
		var rb tds.ReplyBuilder
		build(&rb)
		b, err := rb.Bytes()
		if err != nil {
			f.Fatal(err)
		}
		return pkt(tds.PacketReply, b)
	}
	ack := tds.LoginAck{Interface: 1, TDSVersion: tds.TDS74, ProgName: "fuzz", ProgVersion: tds.Version{Major: 16}}
	routed := reply(func(rb *tds.ReplyBuilder) {
		rb.LoginAck(ack)
		rb.EnvRouting(tds.Routing{Port: 1433, Server: "elsewhere.test"})
		rb.Done(tds.Done{})
	})
	failed := reply(func(rb *tds.ReplyBuilder) {
		rb.Error(tds.ErrorInfo{Number: 18456, Class: 14, State: 1, Message: "Login failed for user 'app'."})
		rb.Done(tds.Done{Status: tds.DoneError})
	})
	bigPacket := reply(func(rb *tds.ReplyBuilder) {
		rb.LoginAck(ack)
		rb.EnvPacketSize(512, 4096)
		rb.Done(tds.Done{})
	})
	overlap := pkt(tds.PacketPrelogin, []byte{0x00, 0, 11, 0, 6, 0x01, 0, 11, 0, 1, 0xFF, 1, 0, 0, 0, 0, 0})
	outOfRange := pkt(tds.PacketPrelogin, []byte{0x00, 0, 6, 0, 6, 0x01, 0x7F, 0xFF, 0, 1, 0xFF})
	garbageTLS := pkt(tds.PacketPrelogin, []byte{0x16, 0x03, 0x01, 0x00, 0x05, 0xDE, 0xAD, 0xBE, 0xEF, 0x00})
	clientHello := []byte{0x16, 0x03, 0x01, 0x00, 0x2F, 0x01, 0x00, 0x00, 0x2B, 0x03, 0x03}

	return map[string]sessionSeed{
		"clear_prelogin":                {mode: seedClear, c1: prelogin(tds.EncryptOn)},
		"clear_login7_first":            {mode: seedClear, c1: login},
		"clear_garbage_tls_in_prelogin": {mode: seedClear, c1: prelogin(tds.EncryptOn), c2: garbageTLS},
		"clear_notsup_then_login7":      {mode: seedClear, c1: prelogin(tds.EncryptNotSup), c2: login},
		"clear_length_below_8":          {mode: seedClear, c1: []byte{0x12, 0x01, 0x00, 0x04, 0, 0, 0, 0}},
		"clear_length_ffff":             {mode: seedClear, c1: []byte{0x12, 0x01, 0xFF, 0xFF, 0, 0, 0, 0}},
		"clear_length_beyond_data":      {mode: seedClear, c1: []byte{0x12, 0x00, 0x00, 0x40, 0, 0, 1, 0}, c2: []byte("short")},
		"clear_prelogin_overlap":        {mode: seedClear, c1: overlap},
		"clear_prelogin_out_of_range":   {mode: seedClear, c1: outOfRange},
		"clear_truncated_client_hello":  {mode: seedClear, c1: clientHello},
		"tds7_login_batch_attention":    {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: concat(login, batch, attention, batch)},
		"tds7_off_login":                {mode: seedTDS7, c1: prelogin(tds.EncryptOff), c2: login},
		"tds7_notsup_login":             {mode: seedTDS7, c1: prelogin(tds.EncryptNotSup), c2: login},
		"tds7_bad_login7":               {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: pkt(tds.PacketLogin7, badLogin)},
		"tds7_upstream_routing":         {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: concat(login, batch), up: routed},
		"tds7_upstream_login_failed":    {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: login, up: failed},
		"tds7_upstream_packet_512":      {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: concat(login, batch), up: bigPacket},
		"tds7_upstream_truncated_reply": {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: login, up: []byte{0x04, 0x01, 0x00, 0x09, 0, 0, 1, 0, 0xFD}},
		"tds7_prelogin_twice":           {mode: seedTDS7, c1: prelogin(tds.EncryptOn), c2: concat(prelogin(tds.EncryptOn), login)},
		"tds7_strict_listener":          {mode: seedTDS7 | seedStrict, c1: prelogin(tds.EncryptOn), c2: login},
		"tds7_plain_loopback_sidecar":   {mode: seedTDS7 | seedPlainOK | seedLoopback, c1: prelogin(tds.EncryptNotSup), c2: concat(login, batch)},
		"tds7_plain_not_loopback":       {mode: seedTDS7 | seedPlainOK, c1: prelogin(tds.EncryptNotSup), c2: login},
		"tds8_login_batch":              {mode: seedTDS8, c1: prelogin(tds.EncryptOn), c2: concat(login, batch)},
		"tds8_strict_listener":          {mode: seedTDS8 | seedStrict, c1: prelogin(tds.EncryptReq), c2: concat(login, batch, attention)},
		"tds8_login7_first":             {mode: seedTDS8, c1: login},
		"tds8_login7_oversized":         {mode: seedTDS8, c1: prelogin(tds.EncryptOn), c2: []byte{0x10, 0x01, 0x7F, 0xFF, 0, 0, 1, 0}},
	}
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz/FuzzListenerSession")

// TestSessionSeedCorpus checks that testdata/fuzz/FuzzListenerSession holds
// the seeds of sessionSeeds; -update-corpus rewrites them.
func TestSessionSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzListenerSession")
	for name, s := range sessionSeeds(t) {
		path := filepath.Join(dir, name)
		want := fmt.Appendf(nil, "go test fuzz v1\nbyte(%q)\n[]byte(%q)\n[]byte(%q)\n[]byte(%q)\n", s.mode, s.c1, s.c2, s.up)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestSessionSeedCorpus -update-corpus)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (run go test -run TestSessionSeedCorpus -update-corpus)", path)
		}
	}
}
