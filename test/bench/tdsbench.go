//go:build linux

package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// dsn is go-mssqldb's connection string for addr with full encryption and
// the bench root, as a well-configured application would connect.
func (b *bench) dsn(addr string, extra ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	q.Set("encrypt", "true")
	q.Set("hostNameInCertificate", "localhost")
	q.Set("certificate", b.certs.root)
	q.Set("database", "master")
	q.Set("dial timeout", "10")
	q.Set("connection timeout", "30")
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(sqlUser, sqlPass), Host: addr, RawQuery: q.Encode()}
	return u.String()
}

func (b *bench) openDB(addr string, extra ...string) (*sql.DB, error) {
	c, err := mssql.NewConnector(b.dsn(addr, extra...))
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// latency runs n sequential SELECT 1 on one connection after a warm-up and
// returns the median and 99th percentile in microseconds.
func (b *bench) latency(ctx context.Context, addr string, n int) (p50, p99 sample, err error) {
	db, err := b.openDB(addr)
	if err != nil {
		return sample{}, sample{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	one := func() error {
		var v int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&v); err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("SELECT 1 returned %d", v)
		}
		return nil
	}
	for range max(n/10, 50) {
		if err := one(); err != nil {
			return sample{}, sample{}, err
		}
	}
	lat := make([]float64, 0, n)
	for range n {
		t := time.Now()
		if err := one(); err != nil {
			return sample{}, sample{}, err
		}
		lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
	}
	slices.Sort(lat)
	return sample{value: percentile(lat, 0.50)}, sample{value: percentile(lat, 0.99)}, nil
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// logins counts, for d, complete new sessions per second: TCP, PRELOGIN,
// TLS, LOGIN7, SELECT 1, close; workers at a time. Logins under way when d
// ends are finished and counted, with the time they took.
func (b *bench) logins(ctx context.Context, addr string, d time.Duration, workers int) (sample, error) {
	db, err := b.openDB(addr)
	if err != nil {
		return sample{}, err
	}
	defer db.Close()
	db.SetMaxIdleConns(-1) // no pooling: every query logs in anew
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	stop := start.Add(d)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var v int
				err := db.QueryRowContext(qctx, "SELECT 1").Scan(&v)
				cancel()
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return sample{}, first
	}
	return sample{value: float64(n.Load()) / time.Since(start).Seconds()}, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// bulk reads SELECT * FROM tdstest.rows(rows, width) with packets of
// packetSize bytes (0: the driver's default, 4096) and returns MB/s of row
// data (10^6 bytes per second).
func (b *bench) bulk(ctx context.Context, addr string, totalBytes int64, packetSize int, limit time.Duration) (sample, error) {
	const width = 8000 // VARBINARY(8000): the largest non-MAX column
	rowsN := (totalBytes + width - 1) / width
	var extra []string
	if packetSize > 0 {
		extra = []string{"packet size", fmt.Sprint(packetSize)}
	}
	db, err := b.openDB(addr, extra...)
	if err != nil {
		return sample{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := db.PingContext(ctx); err != nil { // log in outside the timing
		return sample{}, err
	}
	start := time.Now()
	rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM tdstest.rows(%d, %d)", rowsN, width))
	if err != nil {
		return sample{}, err
	}
	defer rows.Close()
	var got int64
	for rows.Next() {
		var v sql.RawBytes
		if err := rows.Scan(&v); err != nil {
			return sample{}, err
		}
		got += int64(len(v))
	}
	if err := rows.Err(); err != nil {
		return sample{}, err
	}
	if got != rowsN*width {
		return sample{}, fmt.Errorf("bulk: %d bytes, want %d", got, rowsN*width)
	}
	return sample{value: float64(got) / time.Since(start).Seconds() / 1e6}, nil
}

// sessions opens n logged-in sessions through a fresh gateway, leaves them
// idle, and returns the gateway's RSS growth per session in KiB.
func (b *bench) sessions(ctx context.Context, n int, settle time.Duration) (sample, error) {
	gw, facts, err := b.startGateway(ctx, false, true)
	if err != nil {
		return sample{}, err
	}
	defer gw.stop()
	addr := facts["sql_addr"]
	conn, err := mssql.NewConnector(b.dsn(addr))
	if err != nil {
		return sample{}, err
	}
	warm, err := openSessions(ctx, conn, 10, 2)
	closeAll(warm)
	if err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	sleepCtx(ctx, settle)
	before, err := treeRSS(gw.pid())
	if err != nil {
		return sample{}, err
	}
	conns, err := openSessions(ctx, conn, n, 8)
	defer closeAll(conns)
	if err != nil {
		return sample{}, fmt.Errorf("after %d sessions: %w", len(conns), err)
	}
	sleepCtx(ctx, settle)
	after, err := treeRSS(gw.pid())
	if err != nil {
		return sample{}, err
	}
	b.heapProfile(ctx, "session_mem")
	// Every session must still work.
	for _, c := range conns[:min(len(conns), 20)] {
		if err := c.(driver.Pinger).Ping(ctx); err != nil {
			return sample{}, fmt.Errorf("idle session no longer works: %w", err)
		}
	}
	return sample{value: float64(after-before) / float64(n) / 1024,
		info: fmt.Sprintf("rss %d→%d MiB", before>>20, after>>20)}, nil
}

func openSessions(ctx context.Context, c *mssql.Connector, n, workers int) ([]driver.Conn, error) {
	var (
		mu    sync.Mutex
		conns = make([]driver.Conn, 0, n)
		next  atomic.Int64
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				dc, err := c.Connect(cctx)
				cancel()
				mu.Lock()
				if err != nil {
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
				conns = append(conns, dc)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first == nil && len(conns) < n {
		first = cmpOr(ctx.Err(), errors.New("fewer sessions than asked"))
	}
	return conns, first
}
