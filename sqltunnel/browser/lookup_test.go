package browser

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBrowser answers each request with what reply returns (nothing when
// it returns nil), on 127.0.0.1:0.
func fakeBrowser(t *testing.T, reply func(n int, req []byte) [][]byte) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	go func() {
		buf := make([]byte, 512)
		for n := 0; ; n++ {
			m, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			for _, d := range reply(n, buf[:m]) {
				_, _ = c.WriteToUDP(d, from)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func resp(text string) []byte {
	b, _ := AppendResponse(nil, []byte(text))
	return b
}

func TestLookupPortAgainstResponder(t *testing.T) {
	tr := startResponder(t, twoInstances)
	r := &Resolver{Port: tr.addr.Port}
	for name, want := range map[string]int{"SQLEXPRESS": 50001, "sqlexpress": 50001, "rEpOrTs": 50002} {
		got, err := r.LookupPort(context.Background(), "127.0.0.1", name)
		if err != nil || got != want {
			t.Errorf("LookupPort(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	tr.waitHandled(t, 3)

	// An unknown instance gets no answer: the lookup sends again every
	// Retransmit and gives up at Timeout.
	r = &Resolver{Port: tr.addr.Port, Timeout: 350 * time.Millisecond, Retransmit: 100 * time.Millisecond}
	_, err := r.LookupPort(context.Background(), "127.0.0.1", "NOSUCH")
	if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unknown instance: %v, want ErrNoAnswer and DeadlineExceeded", err)
	}
	if res := tr.waitHandled(t, 3); res[0] != ResultUnknownInstance {
		t.Fatalf("results %v", res)
	}
}

func TestLookupPortReplies(t *testing.T) {
	const good = "ServerName;DB01;InstanceName;SQLEXPRESS;IsClustered;No;Version;15.0.2000.5;tcp;49733;np;\\\\DB01\\pipe\\MSSQL$SQLEXPRESS\\sql\\query;;"
	tests := []struct {
		name  string
		reply func(n int, req []byte) [][]byte
		port  int
		err   error
	}{
		{"answer", func(int, []byte) [][]byte { return [][]byte{resp(good)} }, 49733, nil},
		{"second_attempt", func(n int, _ []byte) [][]byte {
			if n == 0 {
				return nil // the first request is "lost"
			}
			return [][]byte{resp(good)}
		}, 49733, nil},
		{"stray_then_answer", func(int, []byte) [][]byte { return [][]byte{[]byte("junk"), resp(good)} }, 49733, nil},
		{"several_instances", func(int, []byte) [][]byte {
			return [][]byte{resp("ServerName;DB01;InstanceName;OTHER;IsClustered;No;Version;1;tcp;1;;" + good)}
		}, 49733, nil},
		{"other_instance", func(int, []byte) [][]byte {
			return [][]byte{resp("ServerName;DB01;InstanceName;OTHER;IsClustered;No;Version;1;tcp;1;;")}
		}, 0, ErrUnknownInstance},
		{"pipes_only", func(int, []byte) [][]byte {
			return [][]byte{resp("ServerName;DB01;InstanceName;SQLEXPRESS;IsClustered;No;Version;1;np;\\\\DB01\\pipe\\sql\\query;;")}
		}, 0, ErrNoTCP},
		{"only_junk", func(int, []byte) [][]byte { return [][]byte{{0x05, 0xFF, 0x00, 'x'}} }, 0, ErrBadReply},
		{"silent", func(int, []byte) [][]byte { return nil }, 0, ErrNoAnswer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int32
			port := fakeBrowser(t, func(n int, req []byte) [][]byte {
				requests.Add(1)
				if string(req) != "\x04SQLEXPRESS\x00" {
					t.Errorf("request %q, want CLNT_UCAST_INST SQLEXPRESS", req)
				}
				return tc.reply(n, req)
			})
			r := &Resolver{Port: port, Timeout: 400 * time.Millisecond, Retransmit: 100 * time.Millisecond}
			got, err := r.LookupPort(context.Background(), "127.0.0.1", "SQLEXPRESS")
			if tc.err == nil {
				if err != nil || got != tc.port {
					t.Fatalf("LookupPort = %d, %v; want %d", got, err, tc.port)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("LookupPort = %d, %v; want %v", got, err, tc.err)
			}
			t.Logf("error (expected): %v", err)
		})
	}
}

func TestLookupPortFailsFast(t *testing.T) {
	// Nothing listens: the ICMP port unreachable ends the wait at once.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	_ = c.Close()
	start := time.Now()
	r := &Resolver{Port: port, Timeout: waitLimit}
	if _, err := r.LookupPort(context.Background(), "127.0.0.1", "SQLEXPRESS"); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("closed port: %v, want ErrNoAnswer", err)
	}
	if d := time.Since(start); d > waitLimit/2 {
		t.Fatalf("closed port took %v", d)
	}

	// A context canceled while the lookup waits ends it.
	asked := make(chan struct{}, 10)
	silent := fakeBrowser(t, func(int, []byte) [][]byte { asked <- struct{}{}; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := (&Resolver{Port: silent, Timeout: time.Hour}).LookupPort(ctx, "127.0.0.1", "SQLEXPRESS")
		done <- err
	}()
	<-asked
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNoAnswer) {
			t.Fatalf("canceled: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the lookup ignored its canceled context")
	}

	// Names no request can carry are refused before any I/O.
	for _, name := range []string{"", strings.Repeat("A", 33), "A\x00B"} {
		if _, err := LookupPort(context.Background(), "127.0.0.1", name); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("instance %q: %v, want ErrInvalidValue", name, err)
		}
	}
}
