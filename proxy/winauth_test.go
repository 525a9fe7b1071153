package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connAuthBackend imitates IIS with Windows authentication, reduced to its
// connection semantics: "NTLM negotiate" gets a challenge naming the TCP
// connection, "NTLM auth <challenge> <user>" authenticates the connection
// if the challenge is this connection's, and every later request on an
// authenticated connection is that user's, with or without credentials.
type connAuthBackend struct {
	*httptest.Server
	scheme string // "NTLM" or "Negotiate"
	nextID atomic.Int64
	closed chan int64 // ids of closed connections
	// openRoot answers GET / without credentials with 200, as IIS with
	// anonymous access to the home page: the gateway's probe finds no
	// challenge there.
	openRoot atomic.Bool
}

type connAuthState struct {
	id        int64
	challenge string
	user      string
}

type connAuthKey struct{}

// connAuthReply is what connAuthBackend answers to authenticated requests.
type connAuthReply struct {
	User string `json:"user"`
	Conn int64  `json:"conn"`
	Body string `json:"body"`
}

func newConnAuthBackend(t *testing.T, scheme string) *connAuthBackend {
	t.Helper()
	b := &connAuthBackend{scheme: scheme, closed: make(chan int64, 64)}
	states := sync.Map{} // net.Conn -> *connAuthState
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		st := &connAuthState{id: b.nextID.Add(1)}
		states.Store(c, st)
		return context.WithValue(ctx, connAuthKey{}, st)
	}
	b.Config.ConnState = func(c net.Conn, cs http.ConnState) {
		if cs == http.StateClosed {
			if st, ok := states.LoadAndDelete(c); ok {
				b.closed <- st.(*connAuthState).id
			}
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *connAuthBackend) serve(w http.ResponseWriter, r *http.Request) {
	st := r.Context().Value(connAuthKey{}).(*connAuthState)
	body, _ := io.ReadAll(r.Body) // IIS reads the body of the 401 legs too
	auth := r.Header.Get("Authorization")
	challenge := func(token string) {
		if token == "" {
			w.Header().Add("WWW-Authenticate", b.scheme)
		} else {
			w.Header().Set("WWW-Authenticate", b.scheme+" "+token)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}
	switch {
	case auth == "" && r.URL.Path == "/" && b.openRoot.Load():
		_, _ = io.WriteString(w, "welcome")
		return
	case auth == b.scheme+" negotiate":
		st.challenge = fmt.Sprintf("c%d", st.id)
		challenge(st.challenge)
		return
	case strings.HasPrefix(auth, b.scheme+" auth "):
		f := strings.Fields(auth)
		if len(f) != 4 || f[2] != st.challenge || st.challenge == "" {
			challenge("")
			return
		}
		st.user = f[3]
	case auth != "":
		challenge("")
		return
	case st.user == "":
		challenge("")
		return
	}
	_ = json.NewEncoder(w).Encode(connAuthReply{User: st.user, Conn: st.id, Body: string(body)})
}

// oneConnClient is an HTTPS client to p that keeps to a single connection.
func (p *testProxy) oneConnClient(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: clientTLS(), MaxConnsPerHost: 1, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Transport: tr}
}

// send makes one request and reports the status, the reply and whether the
// client reused its connection.
func send(t *testing.T, c *http.Client, method, url, auth, body string) (int, http.Header, connAuthReply, bool) {
	t.Helper()
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	})
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var reply connAuthReply
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &reply); err != nil {
			t.Fatalf("reply %q: %v", data, err)
		}
	}
	return res.StatusCode, res.Header, reply, reused
}

// handshake runs the three legs for user on c and returns the final reply.
func handshake(t *testing.T, c *http.Client, url, scheme, user, body string) connAuthReply {
	t.Helper()
	code, h, _, _ := send(t, c, http.MethodPost, url, "", body)
	if code != http.StatusUnauthorized || !strings.Contains(h.Get("Www-Authenticate"), scheme) {
		t.Fatalf("%s leg 0: %d %v, want a 401 %s challenge", user, code, h, scheme)
	}
	code, h, _, reused := send(t, c, http.MethodPost, url, scheme+" negotiate", body)
	ch := strings.TrimPrefix(h.Get("Www-Authenticate"), scheme+" ")
	if code != http.StatusUnauthorized || ch == "" || !reused {
		t.Fatalf("%s leg 1: %d challenge %q reused %v", user, code, ch, reused)
	}
	code, _, reply, reused := send(t, c, http.MethodPost, url, scheme+" auth "+ch+" "+user, body)
	if code != http.StatusOK || reply.User != user || !reused {
		t.Fatalf("%s leg 2: %d %+v reused %v; want authenticated on the same connection", user, code, reply, reused)
	}
	return reply
}

func TestWindowsAuthPinsClientConnection(t *testing.T) {
	for _, scheme := range []string{"NTLM", "Negotiate"} {
		t.Run(scheme, func(t *testing.T) {
			b := newConnAuthBackend(t, scheme)
			cfg := oneSite(b.URL)
			cfg.Sites[0].WindowsAuth = true
			p := startProxy(t, cfg)

			// Two users authenticate at once, each on their own client
			// connection: each must get an upstream connection of their own.
			users := []string{"alice", "bob"}
			replies := make([]connAuthReply, len(users))
			clients := make([]*http.Client, len(users))
			var wg sync.WaitGroup
			for i, u := range users {
				clients[i] = p.oneConnClient(false)
				t.Cleanup(clients[i].CloseIdleConnections)
				wg.Go(func() { replies[i] = handshake(t, clients[i], p.base+"/", scheme, u, "form=1&user="+u) })
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			if replies[0].Conn == replies[1].Conn {
				t.Fatalf("alice and bob share upstream connection %d", replies[0].Conn)
			}
			for i, u := range users {
				if want := "form=1&user=" + u; replies[i].Body != want {
					t.Errorf("%s: the authenticated POST arrived with body %q, want %q", u, replies[i].Body, want)
				}
				// Later requests on the client connection, without
				// credentials, ride the authenticated upstream connection.
				for range 3 {
					code, _, r, _ := send(t, clients[i], http.MethodGet, p.base+"/page", "", "")
					if code != http.StatusOK || r.User != u || r.Conn != replies[i].Conn {
						t.Errorf("%s: later request got %d %+v, want user %s on connection %d", u, code, r, u, replies[i].Conn)
					}
				}
			}
			// A new client connection is anonymous: nothing leaks from the
			// authenticated connections.
			other := p.oneConnClient(false)
			t.Cleanup(other.CloseIdleConnections)
			for range 3 {
				if code, _, r, _ := send(t, other, http.MethodGet, p.base+"/page", "", ""); code != http.StatusUnauthorized {
					t.Fatalf("anonymous client got %d %+v, want 401", code, r)
				}
			}

			// Closing a client connection closes its upstream connection.
			clients[0].CloseIdleConnections()
			select {
			case id := <-waitClosed(b, replies[0].Conn):
				_ = id
			case <-time.After(10 * time.Second):
				t.Fatalf("alice's upstream connection %d still open after her client left", replies[0].Conn)
			}
		})
	}
}

// waitClosed delivers id once the backend has seen that connection close.
func waitClosed(b *connAuthBackend, id int64) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		for c := range b.closed {
			if c == id {
				out <- c
				return
			}
		}
	}()
	return out
}

func TestWindowsAuthCredentialsAloneStartPinning(t *testing.T) {
	// A client that sends credentials first (no anonymous request, as
	// browsers do once they know the site) is pinned too.
	b := newConnAuthBackend(t, "NTLM")
	cfg := oneSite(b.URL)
	cfg.Sites[0].WindowsAuth = true
	p := startProxy(t, cfg)
	c := p.oneConnClient(false)
	t.Cleanup(c.CloseIdleConnections)
	_, h, _, _ := send(t, c, http.MethodGet, p.base+"/", "NTLM negotiate", "")
	ch := strings.TrimPrefix(h.Get("Www-Authenticate"), "NTLM ")
	if code, _, r, _ := send(t, c, http.MethodGet, p.base+"/", "NTLM auth "+ch+" carol", ""); code != http.StatusOK || r.User != "carol" {
		t.Fatalf("got %d %+v, want carol authenticated", code, r)
	}
}

func TestWindowsAuthOffStripsCredentials(t *testing.T) {
	b := newConnAuthBackend(t, "NTLM")
	p := startProxy(t, oneSite(b.URL)) // windows_auth false (zero value)
	c := p.oneConnClient(false)
	t.Cleanup(c.CloseIdleConnections)
	code, h, _, _ := send(t, c, http.MethodGet, p.base+"/", "NTLM negotiate", "")
	if code != http.StatusUnauthorized || h.Get("Www-Authenticate") != "NTLM" {
		t.Fatalf("got %d %q; the upstream must not have seen the credentials (a bare challenge)", code, h.Get("Www-Authenticate"))
	}
	if n := len(c.Transport.(*http.Transport).TLSClientConfig.NextProtos); n != 1 {
		t.Fatal("client must speak HTTP/1.1")
	}
}

// TestWindowsAuthOverHTTP2MovesToHTTP1: a site whose home page is
// anonymous passes the probe on HTTP/2; its first challenge to an HTTP/2
// client moves it to HTTP/1.1.
func TestWindowsAuthOverHTTP2MovesToHTTP1(t *testing.T) {
	b := newConnAuthBackend(t, "NTLM")
	b.openRoot.Store(true)
	cfg := oneSite(b.URL)
	cfg.Sites[0].WindowsAuth = true
	p := startProxy(t, cfg)
	alpn := func() string {
		conf := clientTLS()
		conf.NextProtos = []string{"h2", "http/1.1"}
		conn, err := tls.Dial("tcp", p.srv.HTTPSAddr().String(), conf)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().NegotiatedProtocol
	}
	if got := alpn(); got != "h2" {
		t.Fatalf("before any Windows authentication ALPN chose %q, want h2", got)
	}

	c := p.oneConnClient(true)
	t.Cleanup(c.CloseIdleConnections)
	obs := &protoRecorder{inner: c.Transport}
	c.Transport = obs
	code, _, _, _ := send(t, c, http.MethodGet, p.base+"/app", "", "")
	if code != http.StatusUnauthorized {
		t.Fatalf("got %d, want the 401 challenge", code)
	}
	if got := alpn(); got != "http/1.1" {
		t.Errorf("after an NTLM challenge over HTTP/2 ALPN chose %q, want http/1.1", got)
	}
	// The GOAWAY sends the client's next request to a new connection, over
	// HTTP/1.1, where the handshake works.
	reply := handshake(t, c, p.base+"/app", "NTLM", "dave", "")
	if reply.User != "dave" {
		t.Errorf("handshake after the move: %+v", reply)
	}
	if p := obs.protos; len(p) < 2 || p[0] != "HTTP/2.0" || p[len(p)-1] != "HTTP/1.1" {
		t.Errorf("protocols used %v, want HTTP/2.0 first, then HTTP/1.1", p)
	}
}

func TestWindowsAuthCredentialsOverHTTP2NeverPooled(t *testing.T) {
	b := newConnAuthBackend(t, "NTLM")
	b.openRoot.Store(true) // the probe keeps HTTP/2
	cfg := oneSite(b.URL)
	cfg.Sites[0].WindowsAuth = true
	p := startProxy(t, cfg)
	c := p.oneConnClient(true)
	t.Cleanup(c.CloseIdleConnections)
	_, h, _, _ := send(t, c, http.MethodGet, p.base+"/app", "NTLM negotiate", "")
	ch := strings.TrimPrefix(h.Get("Www-Authenticate"), "NTLM ")
	if ch == "" {
		t.Fatal("no challenge")
	}
	// The connection that carried the credentials was for them alone.
	select {
	case <-b.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection used for HTTP/2 credentials stayed open")
	}
	// And nothing authenticated reaches anybody else.
	other := p.oneConnClient(false)
	t.Cleanup(other.CloseIdleConnections)
	if code, _, r, _ := send(t, other, http.MethodGet, p.base+"/app", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous client got %d %+v", code, r)
	}
}

func TestConnAuthDetection(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"NTLM TlRMTVNTUAABAAAA", true},
		{"Negotiate YIIG", true},
		{"negotiate", true},
		{"  NTLM", true},
		{"Basic dXNlcjpwdw==", false},
		{"Bearer x", false},
		{"NTLMv2", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := isConnAuth(tc.value); got != tc.want {
			t.Errorf("isConnAuth(%q) = %v, want %v", tc.value, got, tc.want)
		}
	}
	if !challengesConnAuth(http.Header{"Www-Authenticate": {`Basic realm="x"`, "Negotiate, NTLM"}}) {
		t.Error("a combined challenge header was not recognised")
	}
	if challengesConnAuth(http.Header{"Www-Authenticate": {`Basic realm="intranet"`, "Bearer"}}) {
		t.Error("Basic and Bearer challenges taken for connection-bound ones")
	}
	h := http.Header{"Authorization": {"NTLM abc", "Basic x"}}
	stripConnAuth(h)
	if got := h["Authorization"]; len(got) != 1 || got[0] != "Basic x" {
		t.Errorf("stripConnAuth left %q", got)
	}
}

// protoRecorder notes the protocol of each response a client receives.
type protoRecorder struct {
	inner  http.RoundTripper
	protos []string
}

func (p *protoRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := p.inner.RoundTrip(r)
	if err == nil {
		p.protos = append(p.protos, res.Proto)
	}
	return res, err
}

func (p *protoRecorder) CloseIdleConnections() {
	if c, ok := p.inner.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
