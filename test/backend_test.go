package test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// echo is what the echo backend saw of a request, sent back as JSON.
type echo struct {
	Host           string `json:"host"`
	Path           string `json:"path"`
	Query          string `json:"query"`
	ForwardedFor   string `json:"x_forwarded_for"`
	ForwardedProto string `json:"x_forwarded_proto"`
	ForwardedHost  string `json:"x_forwarded_host"`
	Proto          string `json:"proto"`
}

// newEchoBackend starts a plain-HTTP backend on 127.0.0.1 that answers every
// request with what it saw, as an IIS application behind the gateway would
// see it. Extra handlers take precedence for their patterns.
func newEchoBackend(t *testing.T, extra map[string]http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Host:           r.Host,
			Path:           r.URL.Path,
			Query:          r.URL.RawQuery,
			ForwardedFor:   r.Header.Get("X-Forwarded-For"),
			ForwardedProto: r.Header.Get("X-Forwarded-Proto"),
			ForwardedHost:  r.Header.Get("X-Forwarded-Host"),
			Proto:          r.Proto,
		})
	})
	for pattern, h := range extra {
		mux.HandleFunc(pattern, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// closedPortAddr is a 127.0.0.1 address nothing listens on.
func closedPortAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
