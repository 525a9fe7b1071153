package sqltunnel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// TestDecide is the TDS encryption policy table (docs/architecture.md), row by row.
func TestDecide(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 50000}
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	const (
		req    = configs.ClientEncryptionRequired
		strict = configs.ClientEncryptionStrict
		plain  = configs.ClientEncryptionAllowPlaintextLoopback
	)
	tests := []struct {
		policy configs.ClientEncryption
		client *tds.Encryption
		from   net.Addr
		answer tds.Encryption
		plan   plan
	}{
		{req, new(tds.EncryptOn), remote, tds.EncryptOn, planTLS},
		{req, new(tds.EncryptReq), remote, tds.EncryptOn, planTLS},
		{req, new(tds.EncryptOn | tds.EncryptClientCert), remote, tds.EncryptOn, planTLS},
		{req, new(tds.EncryptOff), remote, tds.EncryptReq, planTLS},
		{req, nil, remote, tds.EncryptReq, planTLS},
		{req, new(tds.EncryptNotSup), remote, tds.EncryptReq, planTLS},
		{req, new(tds.EncryptNotSup), loop, tds.EncryptReq, planTLS},
		{req, new(tds.Encryption(0x04)), remote, tds.EncryptReq, planTLS},
		{strict, new(tds.EncryptOn), remote, tds.EncryptReq, planRefuseStrict},
		{strict, new(tds.EncryptNotSup), loop, tds.EncryptReq, planRefuseStrict},
		{plain, new(tds.EncryptNotSup), loop, tds.EncryptNotSup, planPlain},
		{plain, new(tds.EncryptNotSup), remote, tds.EncryptReq, planTLS},
		{plain, new(tds.EncryptOff), loop, tds.EncryptReq, planTLS},
		{plain, new(tds.EncryptOn), loop, tds.EncryptOn, planTLS},
	}
	for _, tc := range tests {
		s := &session{l: &Listener{cfg: configs.SQLListener{ClientEncryption: tc.policy}}, remote: tc.from}
		answer, p := s.decide(&tds.Prelogin{Encryption: tc.client})
		if answer != tc.answer || p != tc.plan {
			t.Errorf("%s, client %v from %v: answer %v plan %d, want %v plan %d",
				tc.policy, encryptionName(tc.client), tc.from, answer, p, tc.answer, tc.plan)
		}
	}
}

func TestFramer(t *testing.T) {
	pkt := tdsPacket(tds.PacketSQLBatch, 600)
	smp := smpFrame(0x08, 3, 7, tdsPacket(tds.PacketRPC, 512))
	syn := smpFrame(0x01, 0, 0, nil)

	tests := []struct {
		name    string
		in      []byte
		smp     bool
		want    [][]byte
		wantErr error
	}{
		{name: "packets", in: concat(pkt, pkt), want: [][]byte{pkt, pkt}},
		{name: "smp", in: concat(syn, smp, pkt), smp: true, want: [][]byte{syn, smp, pkt}},
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "cut header", in: pkt[:5], wantErr: io.ErrUnexpectedEOF},
		{name: "cut payload", in: pkt[:100], wantErr: io.ErrUnexpectedEOF},
		{name: "cut smp header", in: syn[:10], smp: true, wantErr: io.ErrUnexpectedEOF},
		{name: "length below header", in: []byte{1, 1, 0, 7, 0, 0, 0, 0}, wantErr: tds.ErrBadLength},
		{name: "over the packet size", in: tdsPacket(tds.PacketSQLBatch, 1025), wantErr: tds.ErrPacketTooLarge},
		{name: "smp over the packet size", in: smpFrame(0x08, 0, 0, make([]byte, 1025)), smp: true, wantErr: errBadFrame},
		{name: "smp below its header", in: []byte{smpID, 8, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, smp: true, wantErr: errBadFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFramer(bytes.NewReader(tc.in), 1024, tc.smp)
			defer f.release()
			for i, w := range tc.want {
				got, err := f.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, w) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(w))
				}
			}
			_, err := f.next()
			if tc.wantErr == nil {
				tc.wantErr = io.EOF
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReadMessage(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 1500)
	raw, err := tds.AppendPackets(nil, tds.Message{Type: tds.PacketReply, Payload: payload}, 512)
	if err != nil {
		t.Fatal(err)
	}
	f := newFramer(bytes.NewReader(raw), tds.MaxPacketSize, false)
	defer f.release()
	m, err := f.readMessage(tds.DefaultMaxMessageSize)
	if err != nil {
		t.Fatal(err)
	}
	if m.typ != tds.PacketReply || !bytes.Equal(m.payload, payload) || m.size != len(raw) || len(m.packets) != 3 {
		t.Fatalf("message %v, %d bytes of payload, %d packets, size %d", m.typ, len(m.payload), len(m.packets), m.size)
	}
	f = newFramer(bytes.NewReader(raw), tds.MaxPacketSize, false)
	defer f.release()
	if _, err := f.readMessage(1000); !errors.Is(err, tds.ErrMessageTooLarge) {
		t.Fatalf("error %v, want ErrMessageTooLarge", err)
	}
	mixed := concat(raw[:512], tdsPacket(tds.PacketSQLBatch, 600))
	f = newFramer(bytes.NewReader(mixed), tds.MaxPacketSize, false)
	defer f.release()
	if _, err := f.readMessage(tds.DefaultMaxMessageSize); !errors.Is(err, tds.ErrMixedTypes) {
		t.Fatalf("error %v, want ErrMixedTypes", err)
	}
}

func TestWireSize(t *testing.T) {
	for _, tc := range []struct{ n, size, want int }{
		{0, 4096, 8}, {1, 4096, 9}, {4088, 4096, 4096}, {4089, 4096, 4105}, {8176, 4096, 8192},
	} {
		if got := wireSize(tc.n, tc.size); got != tc.want {
			t.Errorf("wireSize(%d, %d) = %d, want %d", tc.n, tc.size, got, tc.want)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	p := newPKI(t, gwHost)
	good := listenerConfig("127.0.0.1:1433", "")
	tests := []struct {
		name  string
		edit  func(c *configs.SQLListener)
		noTLS bool
	}{
		{name: "no server TLS", noTLS: true},
		{name: "bad policy", edit: func(c *configs.SQLListener) { c.ClientEncryption = "optional" }},
		{name: "bad upstream encryption", edit: func(c *configs.SQLListener) { c.Upstream.Encryption = "off" }},
		{name: "no port", edit: func(c *configs.SQLListener) { c.Upstream.Address = "10.0.0.1" }},
		{name: "plain to a remote upstream", edit: func(c *configs.SQLListener) {
			c.Upstream.Address, c.Upstream.Encryption = "10.0.0.1:1433", configs.UpstreamEncryptionDisabledLoopback
		}},
		{name: "unreadable ca_file", edit: func(c *configs.SQLListener) { c.Upstream.CAFile = "/nonexistent/ca.pem" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			serverTLS := ServerTLS(p.serverTLS)
			if tc.noTLS {
				serverTLS = nil
			}
			if _, err := New(cfg, serverTLS, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	if _, err := New(good, p.serverTLS, nil); err != nil {
		t.Fatalf("New(good): %v", err)
	}
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// FuzzFramer: the relay's frame reader never panics, never returns a frame
// over its limits, and consumes exactly the frames it returns.
func FuzzFramer(f *testing.F) {
	f.Add(tdsPacket(tds.PacketSQLBatch, 600), false)
	f.Add(concat(smpFrame(0x01, 0, 0, nil), smpFrame(0x08, 1, 2, tdsPacket(tds.PacketRPC, 512))), true)
	f.Add([]byte{smpID, 8, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0}, true)
	f.Add([]byte{0x12, 1, 0, 7}, false)
	f.Fuzz(func(t *testing.T, in []byte, smp bool) {
		fr := newFramer(bytes.NewReader(in), 1024, smp)
		defer fr.release()
		consumed := 0
		for {
			frame, err := fr.next()
			if err != nil {
				return
			}
			if len(frame) > smpHeaderLen+1024 || len(frame) < tds.HeaderLen {
				t.Fatalf("frame of %d bytes", len(frame))
			}
			if !bytes.Equal(frame, in[consumed:consumed+len(frame)]) {
				t.Fatal("frame does not match the input")
			}
			consumed += len(frame)
		}
	})
}

// TestReadFailed: a read that ends the pre-login phase is classified by
// what the peer did, not reported as malformed input when it merely left.
func TestReadFailed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"clean close", io.EOF, outcomeClientClosed},
		{"cut mid-packet", io.ErrUnexpectedEOF, outcomeClientClosed},
		{"closed by the drain", net.ErrClosed, outcomeClientClosed},
		{"deadline", os.ErrDeadlineExceeded, outcomeTimeout},
		{"bad length", tds.ErrBadLength, outcomeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := readFailed("reading PRELOGIN", fmt.Errorf("wrapped: %w", tc.err))
			if e.outcome != tc.want {
				t.Errorf("outcome %q, want %q", e.outcome, tc.want)
			}
			if !errors.Is(e, tc.err) && tc.want != outcomeClientClosed {
				t.Errorf("the cause %v is not kept in %v", tc.err, e)
			}
		})
	}
}
