package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestClassify(t *testing.T) {
	dial := func(err error) error {
		return &url.Error{Op: "Get", URL: "http://10.0.0.5/x?patient=1", Err: &net.OpError{
			Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err),
		}}
	}
	tests := []struct {
		name string
		err  error
		kind errorKind
		code int
	}{
		{"refused", dial(syscall.ECONNREFUSED), kindRefused, 502},
		{"host unreachable", dial(syscall.EHOSTUNREACH), kindUnreachable, 502},
		{"network unreachable", dial(syscall.ENETUNREACH), kindUnreachable, 502},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, kindClosed, 502},
		{"closed before response", fmt.Errorf("reading response: %w", io.EOF), kindClosed, 502},
		{"dial timeout", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, kindTimeout, 504},
		{"context deadline", context.DeadlineExceeded, kindTimeout, 504},
		{"dns not found", &net.DNSError{Err: "no such host", Name: "iis01", IsNotFound: true}, kindDNS, 502},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "iis01", IsTimeout: true}, kindTimeout, 504},
		{"untrusted certificate", &url.Error{Err: x509.UnknownAuthorityError{}}, kindTLS, 502},
		{"client went away", fmt.Errorf("round trip: %w", context.Canceled), kindClientCanceled, 499},
		{"something else", errors.New("net/http: HTTP/1.x transport connection broken: malformed HTTP response"), kindOther, 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind := classify(tc.err)
			if kind != tc.kind {
				t.Errorf("classify = %s, want %s", kind, tc.kind)
			}
			if got := kindInfo[kind].status; got != tc.code {
				t.Errorf("status = %d, want %d", got, tc.code)
			}
		})
	}
}

func TestKindInfoIsComplete(t *testing.T) {
	for _, k := range []errorKind{kindTimeout, kindRefused, kindUnreachable, kindDNS, kindTLS, kindClosed, kindClientCanceled, kindTooLarge, kindOther} {
		if kindInfo[k].status == 0 {
			t.Errorf("kind %s has no status", k)
		}
	}
}

func TestSafeErrorDropsTheURL(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "http://10.0.0.5/chart?patient=12345", Err: errors.New("boom")}
	if got := safeError(fmt.Errorf("proxy: %w", err)); got != "boom" {
		t.Errorf("safeError = %q, want %q", got, "boom")
	}
}

func TestErrorHandlerWithoutState(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	eh := &errorHandler{log: zap.New(core)}
	w := httptest.NewRecorder()
	eh.serve(w, httptest.NewRequest(http.MethodGet, "/", nil), errors.New("ReverseProxy must have exactly one of Director or Rewrite set"))
	if w.Code != http.StatusBadGateway {
		t.Errorf("status %d, want 502", w.Code)
	}
	if logs.FilterMessage("upstream request failed").Len() != 1 {
		t.Error("failure not logged")
	}
}

func TestStdLogBridge(t *testing.T) {
	tests := []struct {
		line   string
		msg    string
		level  zapcore.Level
		fields map[string]any
	}{
		{
			line:   "http: TLS handshake error from 192.0.2.7:50123: remote error: tls: unknown certificate authority\n",
			msg:    "tls handshake failed",
			level:  zapcore.DebugLevel,
			fields: map[string]any{"remote": "192.0.2.7:50123", "error": "remote error: tls: unknown certificate authority"},
		},
		{
			line:  "http: Accept error: accept tcp [::]:443: accept4: too many open files; retrying in 5ms\n",
			msg:   "accept failed",
			level: zapcore.WarnLevel,
		},
		{
			line:  "http: panic serving 192.0.2.7:50123: runtime error: index out of range\ngoroutine 1 [running]:\n",
			msg:   "handler panicked",
			level: zapcore.ErrorLevel,
		},
		{
			line:  "httputil: ReverseProxy read error during body copy: unexpected EOF\n",
			msg:   "http server message",
			level: zapcore.DebugLevel,
		},
	}
	for _, tc := range tests {
		t.Run(tc.msg, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			newStdLog(zap.New(core), nil).Print(tc.line)
			all := logs.All()
			if len(all) != 1 {
				t.Fatalf("%d entries, want 1", len(all))
			}
			e := all[0]
			if e.Message != tc.msg || e.Level != tc.level {
				t.Errorf("got %s %q, want %s %q", e.Level, e.Message, tc.level, tc.msg)
			}
			for k, v := range tc.fields {
				if got := e.ContextMap()[k]; got != v {
					t.Errorf("field %s = %v, want %v", k, got, v)
				}
			}
			if tc.fields == nil && !strings.Contains(fmt.Sprint(e.ContextMap()["detail"]), strings.TrimSpace(tc.line)[:20]) {
				t.Errorf("detail %v does not carry the line", e.ContextMap()["detail"])
			}
		})
	}
}

func TestHandshakeErrorsLoggedAtDebug(t *testing.T) {
	p := startProxy(t, oneSite("http://127.0.0.1:1"))
	// A plain-HTTP request to the TLS port fails the handshake.
	conn, err := net.Dial("tcp", p.srv.HTTPSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_, _ = io.ReadAll(conn) // net/http answers 400 and closes
	conn.Close()
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
	// Shutdown waits for the connection, which logs before it closes.
	if n := p.logs.FilterMessage("tls handshake failed").FilterLevelExact(zapcore.DebugLevel).Len(); n != 1 {
		t.Errorf("%d debug 'tls handshake failed' entries, want 1", n)
	}
	for _, e := range p.logs.All() {
		if e.Level > zapcore.InfoLevel {
			t.Errorf("logged at %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
	}
}
