package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// syncBuffer is a bytes.Buffer safe for the timed flush's goroutine.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func (s *syncBuffer) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.b.String(), sub)
}

// TestLoggerBatchesAccessLines: access info lines wait (for the next other
// line, the flush interval, Sync or a full buffer); every other line is
// written at once, after the access lines before it.
func TestLoggerBatchesAccessLines(t *testing.T) {
	// An hour: nothing below but the timed check may see a timed flush.
	out := &syncBuffer{}
	logger, _, err := newBatchingLogger(configs.Log{Level: "info", Format: "json"}, out, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	access := logger.Named(accessLogger)

	access.Info("request", zap.String("path", "/one"))
	access.Info("request", zap.String("path", "/two"))
	if out.contains("/one") {
		t.Fatal("an access line was written at once, not batched")
	}
	logger.Info("sql login")
	lines := out.lines()
	if len(lines) != 3 || !strings.Contains(lines[0], "/one") || !strings.Contains(lines[1], "/two") || !strings.Contains(lines[2], "sql login") {
		t.Fatalf("after a non-access line, output %q; want the two access lines then it", lines)
	}
	if out.writes != 1 {
		t.Errorf("%d writes for three lines, want one", out.writes)
	}

	access.Warn("request", zap.String("path", "/warned"))
	if !out.contains("/warned") {
		t.Error("an access line at warn level waited")
	}

	access.Info("request", zap.String("path", "/synced"))
	if err := logger.Sync(); err != nil {
		t.Fatal(err)
	}
	if !out.contains("/synced") {
		t.Error("Sync did not write the waiting access line")
	}

	long := strings.Repeat("x", 1024)
	for i := 0; i < logBufferSize/1024+1; i++ {
		access.Info("request", zap.String("path", long))
	}
	if !out.contains(long) {
		t.Errorf("%d KiB of access lines waited; want a write once %d KiB wait", logBufferSize/1024+1, logBufferSize>>10)
	}
}

// TestLoggerTimedFlush: with the production interval, an access line with
// nothing after it is written within a few intervals.
func TestLoggerTimedFlush(t *testing.T) {
	out := &syncBuffer{}
	logger, err := newLogger(configs.Log{Level: "info", Format: "json"}, out)
	if err != nil {
		t.Fatal(err)
	}
	logger.Named(accessLogger).Info("request", zap.String("path", "/timed"))
	deadline := time.Now().Add(25 * accessFlushInterval) // generous: a loaded CI machine
	for !out.contains("/timed") {
		if time.Now().After(deadline) {
			t.Fatalf("access line not written %v after it was logged", 25*accessFlushInterval)
		}
		time.Sleep(accessFlushInterval / 4)
	}
}
