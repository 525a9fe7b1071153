//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// cpuProfile saves a CPU profile of the long-running gateway for d.
func (b *bench) cpuProfile(ctx context.Context, file string, d time.Duration) error {
	return saveProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.pprof, int(d.Seconds())), file, d+30*time.Second)
}

// heapProfile saves a heap profile of the fresh gateway of a memory test
// as DIR/<id>.heap.pprof; it does nothing without -profile.
func (b *bench) heapProfile(ctx context.Context, id string) {
	if b.pprof2 == "" {
		return
	}
	file := filepath.Join(b.profileDir, id+".heap.pprof")
	if err := saveProfile(ctx, "http://"+b.pprof2+"/debug/pprof/heap?gc=1", file, 30*time.Second); err != nil {
		logf("heap profile for %s: %v", id, err)
	}
}

func saveProfile(ctx context.Context, url, file string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	logf("wrote %s", file)
	return f.Close()
}
