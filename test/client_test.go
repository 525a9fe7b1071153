package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// httpsClient is a client that trusts only roots, verifies serverName and
// always dials addr, whatever host the request URL names: a browser on a
// machine whose DNS points serverName at the gateway.
func httpsClient(roots *x509.CertPool, serverName, addr string) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			},
			TLSHandshakeTimeout: 10 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// handshake opens a new TLS connection to addr for serverName, verifying it
// against roots, and returns the connection state.
func handshake(addr, serverName string, roots *x509.CertPool) (tls.ConnectionState, error) {
	dialer := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config:    &tls.Config{RootCAs: roots, ServerName: serverName},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// getEcho sends GET url with the Host header host (and any extra headers)
// through client and decodes the echo backend's answer.
func getEcho(t *testing.T, client *http.Client, url, host string, extra ...string) (*http.Response, echo) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, want 200 OK; body %q", url, resp.Status, body)
	}
	var e echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("GET %s: the body is not the echo backend's answer: %v: %q", url, err, body)
	}
	return resp, e
}

// httpsURL is the https URL of path on host, dialled at addr's port.
func httpsURL(host, addr, path string) string {
	_, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("https://%s:%s%s", host, port, path)
}
