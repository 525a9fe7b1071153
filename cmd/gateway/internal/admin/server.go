package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/status"
)

// Timeouts of the admin HTTP server: scrapes and probes are small and fast.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
	// shutdownTimeout bounds how long Serve waits for scrapes in progress
	// after its context ends.
	shutdownTimeout = 5 * time.Second
)

// Options are what the endpoints report.
type Options struct {
	// Gatherer serves /metrics; nil answers 404 there.
	Gatherer prometheus.Gatherer
	// Ready returns why the gateway is not ready to take traffic, one short
	// reason each; none means ready. Nil: always ready.
	Ready func() []string
	// Certs returns the value /certs encodes as JSON. Nil answers 404 there.
	Certs func() any
	// Status returns the snapshot behind / (the status page) and
	// /status.json, with the window of the last since when since > 0. Nil
	// answers 404 there.
	Status func(since time.Duration) (status.Snapshot, error)
	// Logger logs under the name "admin"; nil discards.
	Logger *zap.Logger
}

// Server is the admin endpoint. Create it with New, bind with Listen, run
// with Serve.
type Server struct {
	addr string
	opts Options
	log  *zap.Logger
	srv  *http.Server
	ln   net.Listener
}

// New builds the endpoint for addr (admin.listen); nothing is bound yet.
func New(addr string, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Server{addr: addr, opts: opts, log: opts.Logger.Named("admin")}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	return s
}

// Listen binds the address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves until ctx ends (calling Listen first if needed), then lets
// requests in progress finish for a few seconds. It returns nil after ctx
// ends, or the error that stopped the listener.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.log.Info("admin endpoint listening", zap.Stringer("addr", s.ln.Addr()))
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin endpoint on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler is the endpoint's routing: GET and HEAD of /healthz, /readyz,
// /metrics and /certs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      zap.NewStdLog(s.log.Named("metrics")),
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	if s.opts.Certs != nil {
		mux.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
			data, err := json.MarshalIndent(s.opts.Certs(), "", "  ")
			if err != nil {
				s.log.Error("encoding /certs", zap.Error(err))
				writeText(w, http.StatusInternalServerError, "500 Internal Server Error: encoding the certificates failed.\n")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(append(data, '\n'))
		})
	}
	if s.opts.Status != nil {
		mux.HandleFunc("GET /{$}", s.statusPage)
		mux.HandleFunc("GET /status.json", s.statusJSON)
	}
	return mux
}

// maxSince bounds ?since=: the history keeps a day.
const maxSince = status.DefaultKeep

// statusJSON answers the snapshot; ?since=DURATION (e.g. 1h, 24h) adds
// what the gateway saw over that span.
func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	var since time.Duration
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxSince {
			writeText(w, http.StatusBadRequest, fmt.Sprintf("400 Bad Request: since=%q: give a duration up to %s, e.g. 24h.\n", v, maxSince))
			return
		}
		since = d
	}
	snap, err := s.opts.Status(since)
	if err != nil {
		s.log.Error("building /status.json", zap.Error(err))
		writeText(w, http.StatusInternalServerError, "500 Internal Server Error: the status could not be gathered.\n")
		return
	}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		s.log.Error("encoding /status.json", zap.Error(err))
		writeText(w, http.StatusInternalServerError, "500 Internal Server Error: encoding the status failed.\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(data, '\n'))
}

// statusPage is the HTML status page: self-contained, no script.
func (s *Server) statusPage(w http.ResponseWriter, _ *http.Request) {
	snap, err := s.opts.Status(0)
	if err != nil {
		s.log.Error("building the status page", zap.Error(err))
		writeText(w, http.StatusInternalServerError, "500 Internal Server Error: the status could not be gathered.\n")
		return
	}
	var buf bytes.Buffer
	if err := status.WritePage(&buf, snap); err != nil {
		s.log.Error("rendering the status page", zap.Error(err))
		writeText(w, http.StatusInternalServerError, "500 Internal Server Error: rendering the status page failed.\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Nothing external and no script: a locked-down browser shows it all.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	_, _ = w.Write(buf.Bytes())
}

// readyz answers 200 "ready" or 503 with every reason, one line each.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var problems []string
	if s.opts.Ready != nil {
		problems = s.opts.Ready()
	}
	if len(problems) == 0 {
		writeText(w, http.StatusOK, "ready\n")
		return
	}
	writeText(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(problems, "\nnot ready: ")+"\n")
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// Close releases the socket of an endpoint that never served (a reload
// that was refused after binding it).
func (s *Server) Close() {
	if s.ln != nil {
		_ = s.ln.Close()
	}
}
