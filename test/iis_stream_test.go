package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestIISWebSocketAndEvents checks SignalR's transports through the
// gateway: a WebSocket echo with a real client, and server-sent events that
// must arrive one by one, as the application sends them.
func TestIISWebSocketAndEvents(t *testing.T) {
	t.Parallel()
	iis := newIISDouble(t, "iis01", "NTLM", nil)
	g, roots := iisGateway(t, gwSite{Hosts: []string{"app.test"}, Upstreams: []string{iis.url}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("websocket", func(t *testing.T) {
		_, port, _ := strings.Cut(g.httpsAddr, ":")
		c, resp, err := websocket.Dial(ctx, "wss://app.test:"+port+"/ws", &websocket.DialOptions{
			HTTPClient: httpsClient(roots, "app.test", g.httpsAddr),
		})
		if err != nil {
			t.Fatalf("dial through the gateway: %v (%v)", err, resp)
		}
		defer func() { _ = c.CloseNow() }()
		for i := range 20 {
			msg := fmt.Sprintf(`{"H":"chatHub","M":"send","A":["message %d"]}`, i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageText || string(got) != "iis01: "+msg {
				t.Fatalf("echo %d: %v %q %v", i, typ, got, err)
			}
		}
		big := strings.Repeat("b", 1<<20)
		if err := c.Write(ctx, websocket.MessageBinary, []byte(big)); err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(2 << 20)
		if _, got, err := c.Read(ctx); err != nil || len(got) != len("iis01: ")+len(big) {
			t.Fatalf("1 MiB message: %d bytes back, %v", len(got), err)
		}
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	t.Run("server_sent_events", func(t *testing.T) {
		client := httpsClient(roots, "app.test", g.httpsAddr)
		client.Timeout = 0
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpsURL("app.test", g.httpsAddr, "/events?n=4"), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		br := bufio.NewReader(resp.Body)
		// The double sends event i+1 only after the test has read event i:
		// each one must come through on its own, not when the stream ends.
		for i := 1; i <= 4; i++ {
			line, err := br.ReadString('\n')
			if err != nil || line != fmt.Sprintf("data: %d\n", i) {
				t.Fatalf("event %d: %q %v", i, line, err)
			}
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			if i < 4 {
				select {
				case iis.events <- struct{}{}:
				case <-ctx.Done():
					t.Fatal("the application never waited for the next event")
				}
			}
		}
	})
}

// bigTransferSize is the size of TestIISBigTransfer's upload and download:
// 256 MiB by default, 1 GiB with GATEWAY_E2E_BIG=1 (make verify), or any
// number of bytes given in GATEWAY_E2E_BIG_BYTES.
func bigTransferSize(t *testing.T) int64 {
	if v := os.Getenv("GATEWAY_E2E_BIG_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("GATEWAY_E2E_BIG_BYTES=%q is not a positive number", v)
		}
		return n
	}
	if os.Getenv("GATEWAY_E2E_BIG") == "1" {
		return 1 << 30
	}
	return 256 << 20
}

// maxGatewayRSS bounds the gateway's peak resident memory while it moves the
// transfers: their size goes through, only buffers stay.
const maxGatewayRSS = 200 << 20

// TestIISBigTransfer streams a large upload and a large download through the
// gateway and checks the content, and that the gateway's peak memory stays
// bounded: nothing is held whole in memory.
func TestIISBigTransfer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the gateway's peak memory from /proc")
	}
	t.Parallel()
	size := bigTransferSize(t)
	iis := newIISDouble(t, "iis01", "NTLM", nil)
	g, roots := iisGateway(t, gwSite{Hosts: []string{"app.test"}, Upstreams: []string{iis.url}})
	client := httpsClient(roots, "app.test", g.httpsAddr)
	client.Timeout = 0
	before := peakRSS(t, g.cmd.Process.Pid)

	start := time.Now()
	resp, err := client.Post(httpsURL("app.test", g.httpsAddr, "/upload"), "application/octet-stream",
		io.LimitReader(&patternReader{}, size))
	if err != nil {
		t.Fatal(err)
	}
	var rep uploadReport
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || rep.Bytes != size || !rep.PatternOK {
		t.Fatalf("upload: IIS got %d of %d bytes, intact %v (%v)", rep.Bytes, size, rep.PatternOK, err)
	}
	up := time.Since(start)

	start = time.Now()
	resp, err = client.Get(httpsURL("app.test", g.httpsAddr, fmt.Sprintf("/download?size=%d", size)))
	if err != nil {
		t.Fatal(err)
	}
	var pc patternChecker
	_, err = io.CopyBuffer(&pc, resp.Body, make([]byte, 256<<10))
	resp.Body.Close()
	if err != nil || pc.n != size || pc.bad {
		t.Fatalf("download: %d of %d bytes, intact %v (%v)", pc.n, size, !pc.bad, err)
	}
	down := time.Since(start)

	peak := peakRSS(t, g.cmd.Process.Pid)
	t.Logf("%d MiB up in %s, down in %s; gateway peak RSS %d MiB before, %d MiB after",
		size>>20, up.Round(time.Millisecond), down.Round(time.Millisecond), before>>20, peak>>20)
	if peak > maxGatewayRSS {
		t.Errorf("gateway peak RSS %d MiB after moving %d MiB each way, want under %d MiB", peak>>20, size>>20, maxGatewayRSS>>20)
	}
}

// peakRSS is a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
