package sqltunnel

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// benchPacketSizes are go-mssqldb's default, the most SQL Server grants on
// encrypted connections, and the protocol maximum.
var benchPacketSizes = []int{tds.DefaultPacketSize, 16383, tds.MaxPacketSize}

// replyPackets is a result message of n packets of size bytes each.
func replyPackets(tb testing.TB, n, size int) []byte {
	tb.Helper()
	payload := bytes.Repeat([]byte{0xAB}, n*(size-tds.HeaderLen))
	wire, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketReply, Payload: payload}, size)
	if err != nil {
		tb.Fatal(err)
	}
	return wire
}

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkFramer measures the relay's own work per packet: framing and the
// copy loop, from memory to nowhere, without TLS or sockets.
func BenchmarkFramer(b *testing.B) {
	for _, size := range benchPacketSizes {
		b.Run(fmt.Sprintf("packet=%d", size), func(b *testing.B) {
			const perMessage = 64
			wire := replyPackets(b, perMessage, size)
			src := bytes.NewReader(wire)
			var n atomic.Int64
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			f := newFramer(src, size, false)
			defer f.release()
			for b.Loop() {
				src.Reset(wire)
				if err := copyFrames(discardConn{}, f, &n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelayTLS relays a stream of packets from one loopback TLS
// connection to another, as a session's upstream-to-client direction does:
// TLS decryption, framing, TLS encryption and the socket calls on both legs.
// The sender writes each packet in its own Write (one TLS record each), as
// SQL Server does. "per-packet" writes each packet on in its own Write (the
// client-to-server direction's rule), "coalesced" gathers back-to-back
// packets (the server-to-client direction). The sender and the receiver run
// in the same process, so about half of the time is theirs; compare the
// two, not absolute figures.
func BenchmarkRelayTLS(b *testing.B) {
	cert, rootPEM, err := tdstest.NewCertificate("localhost")
	if err != nil {
		b.Fatal(err)
	}
	modes := []struct {
		name string
		copy func(dst, src net.Conn, size int) error
	}{
		{"per-packet", func(dst, src net.Conn, size int) error {
			f := newFramer(src, size, false)
			defer f.release()
			var n atomic.Int64
			return copyFrames(dst, f, &n)
		}},
		{"coalesced", func(dst, src net.Conn, size int) error {
			var g readGuard
			var n atomic.Int64
			return copyFramesCoalesced(dst, src, &g, size, false, &n)
		}},
	}
	for _, size := range benchPacketSizes {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("packet=%d/%s", size, mode.name), func(b *testing.B) {
				in := tlsPair(b, cert, rootPEM)  // sender -> relay
				out := tlsPair(b, cert, rootPEM) // relay -> receiver
				const perMessage = 64
				wire := replyPackets(b, perMessage, size)

				done := make(chan error, 1)
				go func() { done <- mode.copy(out.client, in.server, size) }()
				recvErr := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.Discard, out.server)
					recvErr <- err
				}()
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					for p := wire; len(p) > 0; p = p[size:] {
						if _, err := in.client.Write(p[:size]); err != nil {
							b.Fatal(err)
						}
					}
				}
				_ = in.client.CloseWrite()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				_ = out.client.CloseWrite()
				if err := <-recvErr; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// tlsConns is a TLS connection over loopback TCP, both ends.
type tlsConns struct{ client, server *tls.Conn }

func tlsPair(tb testing.TB, cert tls.Certificate, rootPEM []byte) tlsConns {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		tb.Fatal("no certificate in the root PEM")
	}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	srvRaw := <-accepted
	if srvRaw == nil {
		tb.Fatal("accept failed")
	}
	// TLS 1.2, as TDS 7.x carries.
	server := tls.Server(srvRaw, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})
	client := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	hs := make(chan error, 1)
	go func() { hs <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-hs; err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	return tlsConns{client: client, server: server}
}
