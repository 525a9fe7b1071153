package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// errBody fails after its data, as a malformed chunked body does.
type errBody struct {
	r   io.Reader
	err error
}

func (b *errBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, b.err
	}
	return n, err
}

func (b *errBody) Close() error { return nil }

func TestGuardFraming(t *testing.T) {
	tests := []struct {
		name      string
		proto     int
		te        []string
		auth      string
		wantClose bool
	}{
		{name: "chunked_http1", proto: 1, te: []string{"chunked"}, wantClose: true},
		{name: "content_length_http1", proto: 1},
		{name: "chunked_with_ntlm", proto: 1, te: []string{"chunked"}, auth: "NTLM TlRMTVNTUAABAAAA", wantClose: false},
		{name: "http2", proto: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "https://app.test/", strings.NewReader("x"))
			r.ProtoMajor, r.TransferEncoding = tc.proto, tc.te
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			guardFraming(w, r)
			if got := w.Header().Get("Connection") == "close"; got != tc.wantClose {
				t.Errorf("Connection: close set %t, want %t", got, tc.wantClose)
			}
		})
	}

	// Body errors become the client's, and map to 400, not 502.
	bad := errors.New("invalid byte in chunk length")
	r := httptest.NewRequest(http.MethodPost, "https://app.test/", nil)
	r.Body = &errBody{r: strings.NewReader("abc"), err: bad}
	guardFraming(httptest.NewRecorder(), r)
	data, err := io.ReadAll(r.Body)
	if string(data) != "abc" || !errors.Is(err, bad) {
		t.Fatalf("read %q, %v; want the data, then the body's error", data, err)
	}
	if k := classify(err); k != kindBadBody || kindInfo[k].status != http.StatusBadRequest {
		t.Errorf("classify(%v) = %s (status %d), want %s (400)", err, k, kindInfo[k].status, kindBadBody)
	}
	r.Body = &errBody{r: strings.NewReader("abc"), err: io.EOF}
	guardFraming(httptest.NewRecorder(), r)
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Errorf("a clean body ended with %v", err)
	}
}
