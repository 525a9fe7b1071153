package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkProxyRequest sends small GET requests through a running Server
// (TLS on 127.0.0.1, HTTP/1.1 keep-alive, 64-byte responses) from parallel
// clients: the whole request path in one process, for -cpuprofile and
// -memprofile. The client and the upstream run in the same process, so
// allocations and time include theirs; compare runs, not absolute figures.
func BenchmarkProxyRequest(b *testing.B) {
	body := make([]byte, 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	srv := serveForBench(b, up.URL, zap.NewNop())
	tlsCfg := clientTLS()
	tlsCfg.ServerName = "app.example.com"
	tlsCfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	url := "https://" + srv.HTTPSAddr().String() + "/"

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			req.Host = "app.example.com"
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %s", resp.Status)
				return
			}
		}
	})
}

// BenchmarkProxiedRequest is BenchmarkProxyRequest with ends that allocate
// nothing per request: each client goroutine writes a fixed request on its
// own keep-alive TLS connection and reads the response with a fixed buffer,
// and the upstream answers from a fixed buffer on raw TCP. Its allocs/op are
// therefore the gateway's own per proxied request (make bench reports them
// against the target of 60).
func BenchmarkProxiedRequest(b *testing.B) {
	up := rawUpstream(b)
	srv := benchServer(b, "http://"+up)
	request := []byte("GET /some/path?x=1 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	tlsCfg := clientTLS()
	tlsCfg.ServerName = "app.example.com"
	tlsCfg.NextProtos = []string{"http/1.1"}
	addr := srv.HTTPSAddr().String()

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, err := tls.Dial("tcp", addr, tlsCfg)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 16<<10)
		for pb.Next() {
			if _, err := c.Write(request); err != nil {
				b.Error(err)
				return
			}
			if err := readRawResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchServer runs a Server with one site on upstream until the benchmark
// ends, as the gateway runs it: metrics on, and the access log encoded as
// JSON at info (written to io.Discard).
func benchServer(b *testing.B, upstream string) *Server {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	return serveForBench(b, upstream, logger, WithMetrics(NewMetrics()))
}

// serveForBench runs a Server with one site on upstream until the benchmark
// ends.
func serveForBench(b *testing.B, upstream string, logger *zap.Logger, opts ...Option) *Server {
	cfg := oneSite(upstream)
	cfg.Listen = "127.0.0.1:0"
	srv, err := New(cfg, serverTLS(), logger, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Error(err)
			}
		case <-time.After(30 * time.Second):
			b.Error("Serve did not return")
		}
	})
	return srv
}

// rawUpstream answers every request on every connection with one fixed
// 64-byte 200 response, without allocating per request.
func rawUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	response := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n" + strings.Repeat("x", 64))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 16<<10)
				for {
					// Requests are GETs without a body: read to the blank line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(response); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// readRawResponse reads one response with a Content-Length body from br
// without allocating, and fails unless it is a 200.
func readRawResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		const cl = "content-length:"
		if len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)) {
			length = 0
			for _, c := range bytes.TrimSpace(line[len(cl):]) {
				length = length*10 + int(c-'0')
			}
		}
	}
	if length < 0 {
		return errors.New("response without Content-Length")
	}
	_, err = br.Discard(length)
	return err
}
