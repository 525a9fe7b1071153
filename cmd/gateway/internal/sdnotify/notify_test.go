package sdnotify

import (
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fakeSystemd listens on a unixgram socket as systemd does and returns the
// socket path and a function that reads the next datagram.
func fakeSystemd(t *testing.T) (string, func() string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("unixgram sockets: systemd runs on Linux")
	}
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := c.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("reading the notification: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifyStates(t *testing.T) {
	path, next := fakeSystemd(t)
	t.Setenv(Socket, path)
	tests := []struct {
		name string
		send func() (bool, error)
		want []string // lines the datagram must hold
	}{
		{"ready", func() (bool, error) { return Ready("serving 2 listeners") }, []string{"READY=1", "STATUS=serving 2 listeners"}},
		{"reloading", Reloading, []string{"RELOADING=1"}},
		{"stopping", func() (bool, error) { return Stopping("draining\nnow", 40*time.Second) },
			[]string{"STOPPING=1", "STATUS=draining now", "EXTEND_TIMEOUT_USEC=40000000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sent, err := tc.send()
			if err != nil || !sent {
				t.Fatalf("sent %v, err %v", sent, err)
			}
			got := strings.Split(next(), "\n")
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || g == w
				}
				if !found {
					t.Errorf("datagram %q lacks %q", got, w)
				}
			}
			if tc.name == "reloading" && runtime.GOOS == "linux" {
				if !strings.HasPrefix(got[len(got)-1], "MONOTONIC_USEC=") {
					t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", got)
				}
			}
		})
	}
}

func TestNotifyWithoutSocket(t *testing.T) {
	t.Setenv(Socket, "")
	sent, err := Ready("x")
	if sent || err != nil {
		t.Fatalf("without %s: sent %v, err %v; want nothing sent and no error", Socket, sent, err)
	}
}

func TestNotifyBadSocket(t *testing.T) {
	t.Setenv(Socket, "relative/path")
	if _, err := Ready("x"); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
	t.Setenv(Socket, filepath.Join(t.TempDir(), "nobody-listens"))
	if _, err := Ready("x"); err == nil {
		t.Fatal("a socket nobody listens on was accepted")
	}
}
