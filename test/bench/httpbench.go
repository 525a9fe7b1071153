//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one measurement of one metric on one target.
type sample struct {
	value float64
	note  string // for the report: errors seen, resumption share
	info  string // for the JSON and the log only: memory before and after...
}

// runLoad runs a load generator with a hard time limit and returns its
// standard output.
func runLoad(ctx context.Context, limit time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`(\d+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	h2Rate      = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Reqs      = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// wrk runs wrk -t2 -c50 against url for d and returns requests per second.
// Extra headers (Connection: close) go in headers.
func wrk(ctx context.Context, url string, d time.Duration, conns int, headers ...string) (sample, error) {
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, err := runLoad(ctx, d+30*time.Second, "wrk", args...)
	if err != nil {
		return sample{}, err
	}
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return sample{}, fmt.Errorf("wrk: no Requests/sec in:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	s := sample{value: rate}
	var errs []string
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		errs = append(errs, "non-2xx "+m[1])
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		errs = append(errs, fmt.Sprintf("socket errors c%s r%s w%s t%s", m[1], m[2], m[3], m[4]))
	}
	if m := wrkTotal.FindStringSubmatch(out); m != nil && len(errs) > 0 {
		errs = append(errs, "of "+m[1])
	}
	s.note = strings.Join(errs, " ")
	return s, nil
}

// h2load runs h2load -c conns -m 10 -t 2 -D d against url and returns
// requests per second.
func h2load(ctx context.Context, url string, d time.Duration, conns int) (sample, error) {
	out, err := runLoad(ctx, d+30*time.Second, "h2load",
		"-c", strconv.Itoa(conns), "-m", "10", "-t", "2", "-D", strconv.Itoa(int(d.Seconds())), url)
	if err != nil {
		return sample{}, err
	}
	m := h2Rate.FindStringSubmatch(out)
	if m == nil {
		return sample{}, fmt.Errorf("h2load: no req/s in:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	s := sample{value: rate}
	if !strings.Contains(out, "Application protocol: h2") {
		return sample{}, fmt.Errorf("h2load did not negotiate h2:\n%s", out)
	}
	if m := h2Reqs.FindStringSubmatch(out); m != nil && (m[5] != "0" || m[6] != "0") {
		s.note = fmt.Sprintf("failed %s errored %s of %s", m[5], m[6], m[1])
	}
	return s, nil
}

// clientTLS is what the harness's own clients use: the bench root, the name
// on the certificate, HTTP/1.1 only.
func clientTLS(rootFile string) (*tls.Config, error) {
	pemData, err := os.ReadFile(rootFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, errors.New("no certificate in " + rootFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}, nil
}

// download fetches n bytes from url over HTTP/1.1 and returns MB/s (10^6).
func download(ctx context.Context, tlsCfg *tls.Config, url string, n int64, limit time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableCompression: true, ForceAttemptHTTP2: false,
		ReadBufferSize: 256 << 10}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?bytes=%d", url, n), nil)
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sample{}, fmt.Errorf("download: %s", resp.Status)
	}
	got, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return sample{}, fmt.Errorf("download after %d bytes: %w", got, err)
	}
	if got != n {
		return sample{}, fmt.Errorf("download: %d bytes, want %d", got, n)
	}
	return sample{value: float64(n) / time.Since(start).Seconds() / 1e6}, nil
}

// idleConns measures the resident memory an idle HTTPS keep-alive
// connection costs the server: it opens n TLS connections, sends one
// request on each (so that each is a real keep-alive connection a browser
// would leave open, not a half-finished handshake the server may time out)
// and leaves them idle, then compares the server's RSS with the figure
// before. It returns KiB per connection. With step, it opens them in three
// steps (a quarter, half, all) and reports the RSS after each: the idle
// scaling curve.
func (b *bench) idleConns(ctx context.Context, s *server, tlsCfg *tls.Config, n int, settle time.Duration, step func(n int, rssMiB, perConnKiB float64)) (sample, error) {
	// Warm up lazily-initialised state (upstream pool, TLS caches).
	warm, err := openIdle(ctx, s.addr, tlsCfg, 20, 4)
	closeAll(warm)
	if err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	sleepCtx(ctx, settle)
	before, err := treeRSS(s.proc.pid())
	if err != nil {
		return sample{}, err
	}
	var conns []*tls.Conn
	defer func() { closeAll(conns) }()
	steps := []int{n}
	if step != nil {
		steps = []int{n / 4, n / 2, n}
	}
	for _, target := range steps {
		more, err := openIdle(ctx, s.addr, tlsCfg, target-len(conns), 32)
		conns = append(conns, more...)
		if err != nil {
			return sample{}, fmt.Errorf("after %d connections: %w", len(conns), err)
		}
		if step != nil && target != n {
			sleepCtx(ctx, settle)
			if rss, err := treeRSS(s.proc.pid()); err == nil {
				step(target, float64(rss)/(1<<20), float64(rss-before)/float64(target)/1024)
			}
		}
	}
	sleepCtx(ctx, settle)
	after, err := treeRSS(s.proc.pid())
	if err != nil {
		return sample{}, err
	}
	if s.name == "gateway" {
		b.heapProfile(ctx, "idle_conn_mem")
	}
	// The connections must still be open: a server that closed them
	// would look cheap.
	alive := 0
	for _, c := range conns[:min(len(conns), 200)] {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); errors.Is(err, os.ErrDeadlineExceeded) {
			alive++
		}
	}
	s2 := sample{value: float64(after-before) / float64(n) / 1024}
	if step != nil {
		step(n, float64(after)/(1<<20), s2.value)
	}
	s2.info = fmt.Sprintf("rss %d→%d MiB", before>>20, after>>20)
	if want := min(len(conns), 200); alive < want {
		s2.note += fmt.Sprintf("; only %d of %d sampled connections still open", alive, want)
	}
	return s2, nil
}

// openIdle opens n keep-alive HTTPS connections with workers in parallel,
// each after one GET / with its response read.
func openIdle(ctx context.Context, addr string, tlsCfg *tls.Config, n, workers int) ([]*tls.Conn, error) {
	var (
		mu    sync.Mutex
		conns = make([]*tls.Conn, 0, n)
		next  atomic.Int64
		first error
		wg    sync.WaitGroup
	)
	req := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: gateway-bench\r\n\r\n")
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				c, err := oneRequest(ctx, addr, tlsCfg, req)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return conns, first
}

func oneRequest(ctx context.Context, addr string, tlsCfg *tls.Config, req []byte) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tlsCfg}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := nc.(*tls.Conn)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(req); err != nil {
		_ = c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /: %s", resp.Status)
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// fullHandshakes counts, for d, HTTPS requests each on a new connection
// with a full TLS handshake (no session resumption, unlike wrk, which
// resumes), workers at a time. The client skips certificate verification
// to keep its own share of the CPU small; the certificate was verified
// once when the harness started. It offers only X25519, the key exchange
// every target negotiates with it: left to its defaults it would agree the
// post-quantum hybrid X25519MLKEM768 with the Go servers (gateway, Caddy,
// the backend) and plain X25519 with the OpenSSL 3.0 ones (nginx, HAProxy),
// and the row would compare different amounts of work.
func fullHandshakes(ctx context.Context, addr string, d time.Duration, workers int) (sample, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519}}
	req := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	var (
		n, failed atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		first     error
	)
	start := time.Now()
	stop := start.Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				c, err := oneRequest(ctx, addr, cfg, req)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					continue
				}
				_ = c.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	s := sample{value: float64(n.Load()) / time.Since(start).Seconds()}
	if f := failed.Load(); f > 0 {
		s.note = fmt.Sprintf("%d failed (first: %v)", f, first)
		if n.Load() == 0 {
			return sample{}, first
		}
	}
	return s, nil
}

func closeAll[C io.Closer](cs []C) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// sleepCtx waits d, or less when ctx ends: the settling time before reading
// a process's memory (the measurement, not a readiness wait).
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
