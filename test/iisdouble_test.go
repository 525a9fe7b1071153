package test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/gateway-project/gateway/internal/ntlmtest"
)

// iisDouble is an upstream that behaves like a classic ASP.NET application
// on IIS, as the gateway meets it in the field:
//
//   - GET /login answers 302 with an absolute http:// Location on its
//     internal host name, and sets cookies without Secure;
//   - /secure/* needs Windows Integrated Authentication (NTLM, or NTLM
//     inside Negotiate) whose state lives on the TCP connection: the
//     challenge belongs to the connection that asked for it, and once
//     authenticated the connection is the user's for good. The double
//     records which connection each user authenticated on;
//   - /ws is a WebSocket echo (SignalR's transport), /events a server-sent
//     event stream that waits for the test between events, /upload and
//     /download stream bodies of any size, /health answers 200 or 503;
//   - everything else echoes what it saw as JSON (iisEcho), or, with
//     siteWide set, needs Windows authentication too (anonymous access
//     off for the whole site, the usual intranet set-up) and then echoes.
type iisDouble struct {
	name     string // its machine name, reported in every answer
	internal string // the host name it uses in absolute URLs
	scheme   string // "NTLM", "Negotiate" or "Negotiate, NTLM" (offered in one header each)
	users    map[string]string

	ln   net.Listener
	srv  *http.Server
	url  string // http(s)://127.0.0.1:port
	addr string

	nextConn atomic.Int64
	healthy  atomic.Bool
	siteWide atomic.Bool
	events   chan struct{} // /events sends its next event on each receive

	mu        sync.Mutex
	connUser  map[int64]string   // connection -> the user authenticated on it
	userConns map[string][]int64 // user -> connections they authenticated on
	shared    []string           // violations: a connection authenticated twice
}

// iisEcho is what the double answers on anonymous pages.
type iisEcho struct {
	Server     string `json:"server"`
	Conn       int64  `json:"conn"`
	User       string `json:"user,omitempty"`
	Host       string `json:"host"`
	Path       string `json:"path"`
	Proto      string `json:"proto"`
	XFProto    string `json:"x_forwarded_proto"`
	ClientCert string `json:"x_arr_clientcert"`
	ARRSSL     string `json:"x_arr_ssl"`
	Cookie     string `json:"cookie"`
	BodyLen    int64  `json:"body_len"`
	BodySHA256 string `json:"body_sha256"`
}

type iisConn struct {
	id        int64
	challenge [8]byte
	asked     bool
	user      string
}

type iisConnKey struct{}

// newIISDouble starts a double on 127.0.0.1; tlsCert, when not nil, makes
// it serve HTTPS with that certificate (IIS's own binding).
func newIISDouble(t *testing.T, name, scheme string, tlsCert *tls.Certificate) *iisDouble {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &iisDouble{
		name:      name,
		internal:  name + ".corp.local",
		scheme:    scheme,
		users:     map[string]string{"alice": "Al1ce!", "bob": "B0b!", "carol": "Car0l!", "dave": "Dav3!"},
		events:    make(chan struct{}),
		connUser:  map[int64]string{},
		userConns: map[string][]int64{},
	}
	for _, pw := range d.users {
		registerSecret(pw) // log hygiene: proof_secrets_test.go
	}
	d.healthy.Store(true)
	scheme2 := "http"
	if tlsCert != nil {
		scheme2 = "https"
	}
	d.addr = ln.Addr().String()
	d.url = scheme2 + "://" + d.addr
	d.serve(t, ln, tlsCert)
	return d
}

func (d *iisDouble) serve(t *testing.T, ln net.Listener, tlsCert *tls.Certificate) {
	mux := http.NewServeMux()
	mux.HandleFunc("/login", d.login)
	mux.HandleFunc("/secure/", d.secure)
	mux.HandleFunc("/ws", d.websocket)
	mux.HandleFunc("/events", d.sse)
	mux.HandleFunc("/upload", d.upload)
	mux.HandleFunc("/download", d.download)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if !d.healthy.Load() {
			http.Error(w, "app pool stopped", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if d.siteWide.Load() {
			d.secure(w, r)
			return
		}
		d.echo(w, r)
	})
	d.srv = &http.Server{
		Handler:  mux,
		ErrorLog: log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, iisConnKey{}, &iisConn{id: d.nextConn.Add(1)})
		},
	}
	if tlsCert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*tlsCert}})
	}
	d.ln = ln
	go func() { _ = d.srv.Serve(ln) }()
	t.Cleanup(d.kill)
}

// kill stops the double at once, as a crashed server: its listener and
// every connection close.
func (d *iisDouble) kill() { _ = d.srv.Close() }

// restart serves again on the same address after kill.
func (d *iisDouble) restart(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", d.addr)
	if err != nil {
		t.Fatalf("restarting %s on %s: %v", d.name, d.addr, err)
	}
	d.serve(t, ln, nil)
}

func connOf(r *http.Request) *iisConn { return r.Context().Value(iisConnKey{}).(*iisConn) }

func (d *iisDouble) echo(w http.ResponseWriter, r *http.Request) {
	c := connOf(r)
	registerSecret(r.Header.Get("Cookie")) // log hygiene: proof_secrets_test.go
	sum := sha256.New()
	n, _ := io.Copy(sum, r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(iisEcho{
		Server: d.name, Conn: c.id, User: c.user, Host: r.Host, Path: r.URL.Path, Proto: r.Proto,
		XFProto: r.Header.Get("X-Forwarded-Proto"), ClientCert: r.Header.Get("X-ARR-ClientCert"),
		ARRSSL: r.Header.Get("X-ARR-SSL"), Cookie: r.Header.Get("Cookie"),
		BodyLen: n, BodySHA256: hex.EncodeToString(sum.Sum(nil)),
	})
}

// login is the classic FormsAuthentication redirect, built by ASP.NET from
// the machine's own name over plain HTTP.
func (d *iisDouble) login(w http.ResponseWriter, r *http.Request) {
	registerSecret("s-" + d.name) // log hygiene: proof_secrets_test.go
	registerSecret("t-" + d.name)
	http.SetCookie(w, &http.Cookie{Name: "ASP.NET_SessionId", Value: "s-" + d.name, Path: "/", HttpOnly: true})
	w.Header().Add("Set-Cookie", ".ASPXAUTH=t-"+d.name+"; path=/")
	w.Header().Set("Location", "http://"+d.internal+"/Account/Login.aspx?ReturnUrl=%2fsecure%2f")
	w.Header().Set("Refresh", "5; url=http://"+d.internal+"/timeout.aspx")
	w.WriteHeader(http.StatusFound)
}

// secure requires Windows authentication on the connection.
func (d *iisDouble) secure(w http.ResponseWriter, r *http.Request) {
	c := connOf(r)
	challenge := func(token string) {
		// Like IIS, the body of a 401 leg is read and dropped.
		_, _ = io.Copy(io.Discard, r.Body)
		for s := range strings.SplitSeq(d.scheme, ", ") {
			if token == "" {
				w.Header().Add("WWW-Authenticate", s)
			} else if s == d.usedScheme(r) {
				w.Header().Add("WWW-Authenticate", s+" "+token)
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
	}
	auth := r.Header.Get("Authorization")
	registerSecret(auth) // log hygiene: proof_secrets_test.go
	if auth == "" {
		if c.user == "" {
			challenge("")
			return
		}
		d.echo(w, r)
		return
	}
	scheme, token, _ := strings.Cut(auth, " ")
	msg, err := base64.StdEncoding.DecodeString(token)
	if err != nil || !strings.Contains(d.scheme, scheme) {
		challenge("")
		return
	}
	switch ntlmtest.MessageType(msg) {
	case 1:
		out, sc := ntlmtest.Challenge("CORP", strings.ToUpper(d.name))
		c.challenge, c.asked = sc, true
		challenge(base64.StdEncoding.EncodeToString(out))
	case 3:
		if !c.asked {
			challenge("") // a challenge from another connection means nothing here
			return
		}
		a, err := ntlmtest.Verify(msg, c.challenge, d.users)
		user := a.Name()
		c.asked = false
		if err != nil {
			challenge("")
			return
		}
		d.mu.Lock()
		if prev := d.connUser[c.id]; prev != "" && prev != user {
			d.shared = append(d.shared, fmt.Sprintf("connection %d: %s then %s", c.id, prev, user))
		}
		d.connUser[c.id] = user
		d.userConns[user] = append(d.userConns[user], c.id)
		d.mu.Unlock()
		c.user = user
		d.echo(w, r)
	default:
		challenge("")
	}
}

func (d *iisDouble) usedScheme(r *http.Request) string {
	s, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return s
}

// authRecord returns who authenticated on which connection.
func (d *iisDouble) authRecord() (userConns map[string][]int64, shared []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	userConns = map[string][]int64{}
	for u, cs := range d.userConns {
		userConns[u] = append([]int64(nil), cs...)
	}
	return userConns, append([]string(nil), d.shared...)
}

func (d *iisDouble) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer func() { _ = c.CloseNow() }()
	c.SetReadLimit(4 << 20)
	for {
		typ, data, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, append([]byte(d.name+": "), data...)); err != nil {
			return
		}
	}
}

// sse sends "data: <n>" events, the next one each time the test sends on
// d.events, until the count in ?n= is reached.
func (d *iisDouble) sse(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	for i := 1; i <= n; i++ {
		if i > 1 {
			select {
			case <-d.events:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
			return
		}
		_ = rc.Flush()
	}
}

// upload reads the body, streaming, and reports its size and whether it
// is patternReader's stream.
func (d *iisDouble) upload(w http.ResponseWriter, r *http.Request) {
	var pc patternChecker
	if _, err := io.CopyBuffer(&pc, r.Body, make([]byte, 256<<10)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_ = json.NewEncoder(w).Encode(uploadReport{Server: d.name, Bytes: pc.n, PatternOK: !pc.bad})
}

// download sends ?size= bytes of a fixed pattern, streaming.
func (d *iisDouble) download(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "size", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	_, _ = io.CopyBuffer(w, io.LimitReader(&patternReader{}, size), make([]byte, 256<<10))
}

// patternReader is an endless stream of a fixed 64 KiB pattern.
type patternReader struct{ off int }

var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}()

func (p *patternReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], pattern[p.off:])
		n += c
		p.off = (p.off + c) % len(pattern)
	}
	return n, nil
}

// patternChecker is an io.Writer that counts what it is given and checks
// it is patternReader's stream.
type patternChecker struct {
	n   int64
	off int
	bad bool
}

func (p *patternChecker) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	for rest := b; len(rest) > 0; {
		c := min(len(rest), len(pattern)-p.off)
		if !p.bad && string(rest[:c]) != string(pattern[p.off:p.off+c]) {
			p.bad = true
		}
		rest = rest[c:]
		p.off = (p.off + c) % len(pattern)
	}
	return len(b), nil
}

// uploadReport is the answer of /upload.
type uploadReport struct {
	Server    string `json:"server"`
	Bytes     int64  `json:"bytes"`
	PatternOK bool   `json:"pattern_ok"`
}
