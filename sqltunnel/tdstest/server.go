package tdstest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Server is a running SQL Server double. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	ln      net.Listener
	tlsCfg  *tls.Config
	rootPEM []byte
	log     *zap.Logger
	rec     *recorder

	ctx    context.Context // canceled by Close: ends WAITFORs and stalls
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewServer starts a server with cfg (copied) on cfg.Addr (default
// 127.0.0.1:0) and serves connections in the background until Close. Each
// connection must get through PRELOGIN, TLS and LOGIN7 within 30 seconds;
// after login it may stay idle for ever.
func NewServer(cfg Config) (*Server, error) {
	switch cfg.Encryption {
	case EncryptOff, EncryptForced, EncryptNotSupported, EncryptStrict:
	default:
		return nil, fmt.Errorf("tdstest: unknown encryption setting %v", cfg.Encryption)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, rec: newRecorder(), conns: map[net.Conn]struct{}{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("tdstest")
	s.cfg.Users = cloneMap(cfg.Users)

	var cert tls.Certificate
	if cfg.Certificate != nil {
		cert = *cfg.Certificate
	} else {
		var err error
		if cert, s.rootPEM, err = NewCertificate(); err != nil {
			return nil, err
		}
	}
	minVer := cfg.MinTLSVersion
	if minVer == 0 {
		minVer = tls.VersionTLS12
	}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVer}
	// One set of session ticket keys for the server's life, as a real
	// server process has, shared by the per-connection clones: clients can
	// resume their sessions.
	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		return nil, err
	}
	s.tlsCfg.SetSessionTicketKeys([][32]byte{ticketKey})

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tdstest: listening on %s: %w", addr, err)
	}
	s.ln = ln
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// RootPEM returns the PEM root certificate clients must trust when the
// server generated its own certificate (Config.Certificate nil), else nil.
func (s *Server) RootPEM() []byte { return s.rootPEM }

// Close stops the listener, closes every connection and waits for all the
// server's goroutines to return. It is safe to call more than once.
func (s *Server) Close() error {
	// Cancel first, so that sessions seeing their connection closed know
	// the server is closing.
	s.cancel()
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	var err error
	if first {
		err = s.ln.Close()
	}
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (for example too many open files): back off
			// as net/http does rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
				continue
			case <-s.ctx.Done():
				return
			}
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			newSession(s, c).serve()
		}()
	}
}

// track registers c for Close; false means the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	_ = c.Close()
}
