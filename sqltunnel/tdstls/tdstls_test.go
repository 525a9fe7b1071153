package tdstls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
	"github.com/gateway-project/gateway/sqltunnel/tds"
)

func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	c := testpki.MustSelfSigned(t, testpki.Options{}, "sql.test")
	return c.TLS(), c.Pool()
}

// tap records what a connection writes.
type tap struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.out.Write(p)
	t.mu.Unlock()
	return t.Conn.Write(p)
}

func (t *tap) written() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.out.Bytes()...)
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestHandshakeInsidePrelogin(t *testing.T) {
	cert, pool := testCert(t)
	rawC, rawS := tcpPair(t)
	clientTap := &tap{Conn: rawC}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type result struct {
		conn *tls.Conn
		err  error
	}
	srvDone := make(chan result, 1)
	go func() {
		c, err := Server(ctx, rawS, &tls.Config{Certificates: []tls.Certificate{cert}})
		srvDone <- result{c, err}
	}()
	cc, err := Client(ctx, clientTap, &tls.Config{RootCAs: pool, ServerName: "sql.test"})
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	sr := <-srvDone
	if sr.err != nil {
		t.Fatalf("server handshake: %v", sr.err)
	}
	if v := cc.ConnectionState().Version; v != tls.VersionTLS12 {
		t.Fatalf("negotiated %x, want TLS 1.2 (the most TDS 7.x allows)", v)
	}

	// Every byte the client wrote during the handshake is inside PRELOGIN packets.
	hs := clientTap.written()
	for off := 0; off < len(hs); {
		h, err := tds.ParseHeader(hs[off:])
		if err != nil || h.Type != tds.PacketPrelogin || int(h.Length) > tds.DefaultPacketSize {
			t.Fatalf("handshake byte %d: header %v, err %v", off, h, err)
		}
		off += int(h.Length)
	}

	// After the handshake, TLS records flow directly: the first byte the
	// client writes is a TLS application-data record (0x17), not a TDS header.
	before := len(hs)
	msg := []byte("a TDS packet travelling inside TLS")
	go func() { _, _ = cc.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(sr.conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("server read %q, %v", got, err)
	}
	if after := clientTap.written(); after[before] != 0x17 {
		t.Fatalf("first post-handshake byte = %#x, want a TLS record (0x17)", after[before])
	}
	// And back.
	go func() { _, _ = sr.conn.Write([]byte("reply")) }()
	reply := make([]byte, 5)
	if _, err := io.ReadFull(cc, reply); err != nil || string(reply) != "reply" {
		t.Fatalf("client read %q, %v", reply, err)
	}
}

func TestClientRejectsUntrustedServer(t *testing.T) {
	cert, _ := testCert(t)
	_, otherPool := testCert(t)
	rawC, rawS := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _, _ = Server(ctx, rawS, &tls.Config{Certificates: []tls.Certificate{cert}}) }()
	_, err := Client(ctx, rawC, &tls.Config{RootCAs: otherPool, ServerName: "sql.test"})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
	}
}

func TestServerRejectsPlainLogin(t *testing.T) {
	cert, _ := testCert(t)
	rawC, rawS := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A client told that encryption is required sends LOGIN7 in clear instead.
	login, _ := tds.AppendPackets(nil, tds.Message{Type: tds.PacketLogin7, Payload: make([]byte, 94)}, tds.DefaultPacketSize)
	go func() { _, _ = rawC.Write(login) }()
	_, err := Server(ctx, rawS, &tls.Config{Certificates: []tls.Certificate{cert}})
	var upe *UnexpectedPacketError
	if !errors.As(err, &upe) || upe.Type != tds.PacketLogin7 {
		t.Fatalf("err = %v, want UnexpectedPacketError for LOGIN7", err)
	}
}

func TestTLS13OnlyCannotCarryTDS7(t *testing.T) {
	cert, pool := testCert(t)
	rawC, rawS := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		_, _ = Server(ctx, rawS, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	}()
	if _, err := Client(ctx, rawC, &tls.Config{RootCAs: pool, ServerName: "sql.test"}); err == nil {
		t.Fatal("a TLS 1.3-only server must not complete a TDS 7.x handshake with a TLS 1.2 client")
	}
}

func TestHandshakeHonoursContext(t *testing.T) {
	_, pool := testCert(t)
	rawC, _ := tcpPair(t) // the server never answers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Client(ctx, rawC, &tls.Config{RootCAs: pool, ServerName: "sql.test"}); err == nil {
		t.Fatal("handshake with a silent server must fail when ctx ends")
	}
}
