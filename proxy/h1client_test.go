package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
)

// rawBackend is an upstream that answers each request with the raw bytes
// its script returns, so that tests can send what a well-behaved server
// would not. It counts connections and notices when the gateway closes one.
type rawBackend struct {
	addr     string
	accepted atomic.Int32
	closed   atomic.Int32 // connections the gateway closed (EOF read)
	requests atomic.Int32
	mu       sync.Mutex
	paths    []string
}

// rawReply is what the script says to do with one request.
type rawReply struct {
	bytes []byte
	close bool          // close the connection after writing
	delay time.Duration // wait before writing
}

func startRawBackend(t *testing.T, script func(n int, req *http.Request) rawReply) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
							b.closed.Add(1)
						}
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					n := int(b.requests.Add(1))
					b.mu.Lock()
					b.paths = append(b.paths, req.URL.Path)
					b.mu.Unlock()
					r := script(n, req)
					if r.delay > 0 {
						time.Sleep(r.delay)
					}
					if _, err := c.Write(r.bytes); err != nil || r.close {
						return
					}
				}
			}()
		}
	}()
	return b
}

func okReply(body string, extra ...string) []byte {
	h := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return []byte(fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", h, len(body), body))
}

// get200 fetches path through p and fails unless it is a 200 with want.
func get200(t *testing.T, p *testProxy, path, want string) {
	t.Helper()
	resp, body := p.get(t, "app.example.com", path, nil)
	if resp.StatusCode != http.StatusOK || body != want {
		t.Fatalf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, body, want)
	}
}

// TestH1ClientReusesCleanConnections: GETs, HEADs and body-less responses
// (204, 304, chunked with trailers) leave the upstream connection clean,
// so one connection carries them all.
func TestH1ClientReusesCleanConnections(t *testing.T) {
	b := startRawBackend(t, func(n int, req *http.Request) rawReply {
		switch req.URL.Path {
		case "/head":
			return rawReply{bytes: []byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")}
		case "/204":
			return rawReply{bytes: []byte("HTTP/1.1 204 No Content\r\n\r\n")}
		case "/304":
			return rawReply{bytes: []byte("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")}
		case "/chunked":
			return rawReply{bytes: []byte("HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")}
		}
		return rawReply{bytes: okReply(fmt.Sprintf("reply %d", n))}
	})
	p := startProxy(t, oneSite("http://"+b.addr))
	get200(t, p, "/a", "reply 1")
	req, _ := http.NewRequest(http.MethodHead, p.base+"/head", nil)
	req.Host = "app.example.com"
	if resp, _ := do(t, p.client, req); resp.StatusCode != 200 || resp.ContentLength != 1000 {
		t.Errorf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	for _, path := range []string{"/204", "/304"} {
		if resp, _ := p.get(t, "app.example.com", path, nil); resp.StatusCode != map[string]int{"/204": 204, "/304": 304}[path] {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	resp, body := p.get(t, "app.example.com", "/chunked", nil)
	if body != "hello world" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked: body %q, trailer %v", body, resp.Trailer)
	}
	get200(t, p, "/b", "reply 6")
	if n := b.accepted.Load(); n != 1 {
		t.Errorf("%d upstream connections for 6 sequential requests, want 1", n)
	}
}

// TestH1ClientNeverReusesDirtyConnections: a connection is closed, never
// reused, when the response asked to close, had no length, was followed by
// bytes nobody asked for, or was not read to its end — and each next
// request gets its own response, never the excess of another.
func TestH1ClientNeverReusesDirtyConnections(t *testing.T) {
	tests := []struct {
		name  string
		first rawReply
		want  string
	}{
		{"Connection: close", rawReply{bytes: okReply("first", "Connection: close")}, "first"},
		{"HTTP/1.0 without keep-alive", rawReply{bytes: []byte("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nfirst")}, "first"},
		{"length until close", rawReply{bytes: []byte("HTTP/1.1 200 OK\r\n\r\nfirst"), close: true}, "first"},
		{"a second response nobody asked for", rawReply{bytes: append(okReply("first"),
			okReply("SMUGGLED")...)}, "first"},
		{"excess bytes after the body", rawReply{bytes: []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstEXTRA")}, "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startRawBackend(t, func(n int, req *http.Request) rawReply {
				if n == 1 {
					return tt.first
				}
				return rawReply{bytes: okReply("second " + req.URL.Path)}
			})
			p := startProxy(t, oneSite("http://"+b.addr))
			get200(t, p, "/one", tt.want)
			get200(t, p, "/two", "second /two")
			get200(t, p, "/three", "second /three")
			if n := b.accepted.Load(); n != 2 {
				t.Errorf("%d upstream connections, want 2 (the first one dropped)", n)
			}
		})
	}
}

// TestH1ClientStaleConnection: the upstream closes a pooled connection
// while it is idle (as IIS does after its connection timeout); the next
// request, even one that may not be replayed, goes on a new connection once
// the connection has been idle for peekAfter.
func TestH1ClientStaleConnection(t *testing.T) {
	b := startRawBackend(t, func(n int, req *http.Request) rawReply {
		// No Connection: close: the gateway pools the connection, then
		// the upstream closes it.
		return rawReply{bytes: okReply(fmt.Sprintf("%s %d", req.Method, n)), close: n == 1}
	})
	p := startProxy(t, oneSite("http://"+b.addr))
	get200(t, p, "/", "GET 1")
	time.Sleep(50 * time.Millisecond) // the FIN reaches the gateway
	ageIdle(p, peekAfter)
	req, _ := http.NewRequest(http.MethodPost, p.base+"/", http.NoBody)
	req.Host = "app.example.com"
	resp, body := do(t, p.client, req)
	if resp.StatusCode != http.StatusOK || body != "POST 2" {
		t.Fatalf("POST after the upstream closed the idle connection: %d %q", resp.StatusCode, body)
	}
}

// ageIdle makes the pooled upstream connections of p look idle for d longer.
func ageIdle(p *testProxy, d time.Duration) {
	for _, st := range p.srv.gen.Load().sites {
		for _, u := range st.upstreams {
			c := u.pool.fast
			c.mu.Lock()
			for _, pc := range c.idle {
				pc.idleSince = pc.idleSince.Add(-d)
			}
			c.mu.Unlock()
		}
	}
}

// TestH1ClientReplaysOnlyReplayable: a request that fails on a reused
// connection before any byte of its response is sent again on a new one
// when it is a GET, never when it is a POST.
func TestH1ClientReplaysOnlyReplayable(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			b := startRawBackend(t, func(n int, req *http.Request) rawReply {
				if n == 2 {
					// Read the request, then close without answering.
					return rawReply{close: true}
				}
				return rawReply{bytes: okReply(fmt.Sprintf("reply %d", n))}
			})
			p := startProxy(t, oneSite("http://"+b.addr))
			get200(t, p, "/", "reply 1")
			req, _ := http.NewRequest(method, p.base+"/", http.NoBody)
			req.Host = "app.example.com"
			resp, body := do(t, p.client, req)
			switch method {
			case http.MethodGet:
				if resp.StatusCode != http.StatusOK || body != "reply 3" {
					t.Errorf("GET: %d %q, want the replay's 200 \"reply 3\"", resp.StatusCode, body)
				}
			default:
				if resp.StatusCode != http.StatusBadGateway || b.requests.Load() != 2 {
					t.Errorf("POST: %d after %d upstream requests, want 502 after 2 (never replayed)", resp.StatusCode, b.requests.Load())
				}
			}
		})
	}
}

// TestH1ClientEarlyHints: 103 Early Hints reach the client before the
// final response, over the same pooled connection.
func TestH1ClientEarlyHints(t *testing.T) {
	b := startRawBackend(t, func(n int, req *http.Request) rawReply {
		return rawReply{bytes: append([]byte("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"), okReply("final")...)}
	})
	p := startProxy(t, oneSite("http://"+b.addr))
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, p.base+"/", nil)
	req.Host = "app.example.com"
	resp, body := do(t, p.client, req)
	if resp.StatusCode != 200 || body != "final" || len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
		t.Fatalf("got %d %q with hints %q", resp.StatusCode, body, hints)
	}
}

// TestH1ClientBadResponses: a response header section that never ends, a
// 101 nobody asked for and garbage each give the client a 502 and cost the
// upstream its connection.
func TestH1ClientBadResponses(t *testing.T) {
	tests := map[string][]byte{
		"oversized header": []byte("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes+10) + "\r\n\r\n"),
		"unasked 101":      []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
		"garbage":          []byte("SSH-2.0-OpenSSH_9.2\r\n\r\n"),
	}
	for name, reply := range tests {
		t.Run(name, func(t *testing.T) {
			b := startRawBackend(t, func(n int, req *http.Request) rawReply {
				if n == 1 {
					return rawReply{bytes: reply}
				}
				return rawReply{bytes: okReply("fine")}
			})
			p := startProxy(t, oneSite("http://"+b.addr))
			if resp, _ := p.get(t, "app.example.com", "/", nil); resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
			get200(t, p, "/", "fine")
			if n := b.accepted.Load(); n != 2 {
				t.Errorf("%d upstream connections, want 2", n)
			}
		})
	}
}

// TestH1ClientCancel: a client that goes away while the upstream is slow
// gets its upstream connection closed at once, not when the upstream
// answers; a client that stops reading a body mid-way too.
func TestH1ClientCancel(t *testing.T) {
	b := startRawBackend(t, func(n int, req *http.Request) rawReply {
		if req.URL.Path == "/slow" {
			return rawReply{bytes: okReply("late"), delay: 3 * time.Second}
		}
		return rawReply{bytes: []byte("HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + strings.Repeat("x", 1<<20))}
	})
	p := startProxy(t, oneSite("http://"+b.addr))

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/slow", nil)
	req.Host = "app.example.com"
	if _, err := p.client.Do(req); err == nil {
		t.Fatal("the slow request did not fail at the client's deadline")
	}
	// The upstream answers after 3 s; the request must end well before.
	start := time.Now()
	testkit.EventuallyTrue(t, "the slow request to end", func() bool { return p.srv.InFlight() == 0 })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the slow request ended %v after the client left, want at once", d)
	}

	req, _ = http.NewRequest(http.MethodGet, p.base+"/big", nil)
	req.Host = "app.example.com"
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.client.CloseIdleConnections()
	testkit.EventuallyTrue(t, "the gateway to close the half-read body's upstream connection", func() bool {
		return b.closed.Load() >= 2
	})
}

// TestH1ClientIdleExpiry: a connection idle longer than the pool keeps one
// is closed instead of reused.
func TestH1ClientIdleExpiry(t *testing.T) {
	b := startRawBackend(t, func(n int, req *http.Request) rawReply {
		return rawReply{bytes: okReply("ok")}
	})
	p := startProxy(t, oneSite("http://"+b.addr))
	for _, st := range p.srv.gen.Load().sites {
		for _, u := range st.upstreams {
			u.pool.fast.idleTime = 50 * time.Millisecond
		}
	}
	get200(t, p, "/", "ok")
	time.Sleep(100 * time.Millisecond)
	get200(t, p, "/", "ok")
	if n := b.accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the idle one expired)", n)
	}
	testkit.EventuallyTrue(t, "the expired connection to be closed", func() bool { return b.closed.Load() >= 1 })
}

// TestH1Eligible: only requests without a body or an upgrade take the
// h1Client path.
func TestH1Eligible(t *testing.T) {
	get, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	post, _ := http.NewRequest(http.MethodPost, "http://x/", strings.NewReader("a=1"))
	chunked, _ := http.NewRequest(http.MethodPost, "http://x/", io.NopCloser(strings.NewReader("a=1")))
	upgrade, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	upgrade.Header.Set("Upgrade", "websocket")
	connect, _ := http.NewRequest(http.MethodConnect, "http://x/", nil)
	for _, tt := range []struct {
		name string
		req  *http.Request
		want bool
	}{{"GET", get, true}, {"POST with a body", post, false}, {"chunked POST", chunked, false},
		{"upgrade", upgrade, false}, {"CONNECT", connect, false}} {
		if got := h1Eligible(tt.req); got != tt.want {
			t.Errorf("%s: h1Eligible = %v, want %v", tt.name, got, tt.want)
		}
	}
}
