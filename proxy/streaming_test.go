package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStalledClientIsCut checks the write idle timeout: a client that stops
// reading a long download is disconnected, which ends the upstream request,
// instead of holding both connections for ever.
func TestStalledClientIsCut(t *testing.T) {
	ended := make(chan error, 1)
	chunk := []byte(strings.Repeat("x", 64<<10))
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write(chunk); err != nil {
				ended <- err
				return
			}
		}
	})
	p := startProxy(t, oneSite(b.URL), WithWriteIdleTimeout(200*time.Millisecond))
	conf := clientTLS()
	conf.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", p.srv.HTTPSAddr().String(), conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: app.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read nothing more.
	select {
	case err := <-ended:
		t.Logf("the upstream's write ended: %v", err) // a write error is the point
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream download still runs although the client stopped reading")
	}
}
