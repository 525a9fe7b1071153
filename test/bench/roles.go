//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The harness runs its backends in child processes of its own binary
// (BENCH_ROLE=backend or tds), so that their CPU and memory are not mixed
// with the load generators' and each can be measured and stopped alone.
const roleEnv = "BENCH_ROLE"

const (
	smallBody = 64 // bytes of the keep-alive and handshake tests' response
	sqlUser   = "bench"
	sqlPass   = "Bench-pass-1"
)

// runRole runs the child role named by BENCH_ROLE until SIGTERM. It prints
// one line "ready k=v ..." on standard output once it serves.
func runRole(role string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(args) < 2 {
		return fmt.Errorf("role %s: want CERT KEY arguments", role)
	}
	cert, err := tls.LoadX509KeyPair(args[0], args[1])
	if err != nil {
		return err
	}
	switch role {
	case "backend":
		return runBackend(ctx, cert)
	case "tds":
		return runTDS(ctx, cert)
	}
	return fmt.Errorf("unknown %s %q", roleEnv, role)
}

// runBackend serves the HTTP backend every proxy forwards to, in clear text
// (the upstream leg) and over TLS (the "direct" ceiling, HTTP/1.1 and h2):
//
//	GET /            64 bytes
//	GET /big?bytes=N N bytes, streamed
//	GET /stats       {"full":F,"resumed":R,"upstream_conns":C}: TLS handshakes
//	                 on the TLS port, connections accepted on the clear one
func runBackend(ctx context.Context, cert tls.Certificate) error {
	body := make([]byte, smallBody)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	chunk := make([]byte, 256<<10)
	var full, resumed, upConns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bad bytes", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int64{"full": full.Load(), "resumed": resumed.Load(), "upstream_conns": upConns.Load()})
	})

	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	newServer := func() *http.Server {
		return &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 10 * time.Minute}
	}
	plain, secure := newServer(), newServer()
	plain.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			upConns.Add(1)
		}
	}
	secure.TLSConfig = &tls.Config{
		Certificates: []tls.Certificate{cert},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.DidResume {
				resumed.Add(1)
			} else {
				full.Add(1)
			}
			return nil
		},
	}
	errs := make(chan error, 2)
	go func() { errs <- plain.Serve(plainLn) }()
	go func() { errs <- secure.ServeTLS(tlsLn, "", "") }()
	fmt.Printf("ready http=%s https=%s\n", plainLn.Addr(), tlsLn.Addr())
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	_ = plain.Close()
	_ = secure.Close()
	return nil
}

// runTDS serves the SQL Server double with forced encryption and the bench
// certificate: the "direct" target of the TDS tests and the gateway's
// upstream.
func runTDS(ctx context.Context, cert tls.Certificate) error {
	srv, err := tdstest.NewServer(tdstest.Config{
		Addr:        "127.0.0.1:0",
		Encryption:  tdstest.EncryptForced,
		Certificate: &cert,
		Users:       map[string]string{sqlUser: sqlPass},
	})
	if err != nil {
		return err
	}
	fmt.Printf("ready tds=%s\n", srv.Addr())
	<-ctx.Done()
	return srv.Close()
}
