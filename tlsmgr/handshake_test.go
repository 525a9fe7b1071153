package tlsmgr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandshakeFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", fmt.Errorf("handshake: %w", os.ErrDeadlineExceeded), "timeout"},
		{"context", context.DeadlineExceeded, "timeout"},
		{"eof", io.EOF, "client_closed"},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), "client_closed"},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "not_tls"},
		{"alert type", tls.AlertError(42), "client_rejected_certificate"},
		{"unknown ca alert text", errors.New("remote error: tls: unknown certificate authority"), "client_rejected_certificate"},
		{"old client", errors.New("tls: client offered only unsupported versions: [301]"), "protocol_version"},
		{"no cipher", errors.New("tls: no cipher suite supported by both client and server"), "no_shared_cipher"},
		{"no certificate", errors.New(`no certificate for server name "x.test"`), "no_certificate"},
		{"client certificate", errors.New("tls: client didn't provide a certificate"), "client_certificate"},
		{"other alert", errors.New("remote error: tls: internal error"), "alert"},
		{"anything else", errors.New("boom"), "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HandshakeFailure(tc.err); got != tc.want {
				t.Errorf("HandshakeFailure(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

// TestHandshakeFailureText covers the texts net/http logs for a failed
// handshake ("http: TLS handshake error from ADDR: TEXT").
func TestHandshakeFailureText(t *testing.T) {
	for text, want := range map[string]string{
		"EOF": "client_closed",
		"read tcp 127.0.0.1:443->127.0.0.1:5000: i/o timeout":                    "timeout",
		"client sent an HTTP request to an HTTPS server":                         "not_tls",
		"remote error: tls: bad certificate":                                     "client_rejected_certificate",
		"tls: client offered only unsupported versions: [302 301]":               "protocol_version",
		"read tcp 127.0.0.1:443->127.0.0.1:5000: read: connection reset by peer": "client_closed",
	} {
		if got := HandshakeFailureText(text); got != want {
			t.Errorf("HandshakeFailureText(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestHandshakeVersion(t *testing.T) {
	for v, want := range map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3", 0: "none", 0x0300: "other"} {
		if got := HandshakeVersion(v); got != want {
			t.Errorf("HandshakeVersion(%#x) = %q, want %q", v, got, want)
		}
	}
}

// TestHandshakeCounterShared registers the counter of two protocols in one
// registry, as the HTTPS front and the TDS listeners do.
func TestHandshakeCounterShared(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	for _, p := range []string{"https", "tds"} {
		c := NewHandshakeCounter(p)
		c.WithLabelValues("l", "1.3", HandshakeOK).Inc()
		if err := reg.Register(c); err != nil {
			t.Fatalf("registering the %s counter: %v", p, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || len(mfs[0].Metric) != 2 {
		t.Fatalf("gathered %v, want one family with two series", mfs)
	}
}
