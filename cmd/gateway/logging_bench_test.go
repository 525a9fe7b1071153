package main

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/configs"
)

// countingDiscard counts the writes that reach the sink.
type countingDiscard struct{ writes int }

func (c *countingDiscard) Write(p []byte) (int, error) { c.writes++; return len(p), nil }

// BenchmarkAccessLog logs access lines from parallel goroutines through the
// gateway's logger (its access lines batched by zap's BufferedWriteSyncer,
// other lines flushing) and, for comparison, through a bare
// BufferedWriteSyncer core with the same size and interval.
func BenchmarkAccessLog(b *testing.B) {
	line := func(l *zap.Logger) {
		l.Info("request", zap.String("site", "app.example.com"), zap.String("method", "GET"),
			zap.String("host", "app.example.com"), zap.String("path", "/some/path"), zap.String("proto", "HTTP/1.1"),
			zap.Int("status", 200), zap.Int64("bytes", 64), zap.Int64("request_bytes", 0),
			zap.Duration("duration", 350*time.Microsecond), zap.String("remote", "127.0.0.1:50000"),
			zap.String("tls_version", "1.3"), zap.String("upstream", "http://127.0.0.1:8080"))
	}
	b.Run("gateway", func(b *testing.B) {
		sink := &countingDiscard{}
		logger, _, err := newBatchingLogger(configs.Log{Level: "info", Format: "json"}, sink, accessFlushInterval)
		if err != nil {
			b.Fatal(err)
		}
		access := logger.Named(accessLogger)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				line(access)
			}
		})
		_ = logger.Sync()
		b.ReportMetric(float64(sink.writes)/float64(b.N), "writes/op")
	})
	b.Run("BufferedWriteSyncer", func(b *testing.B) {
		sink := &countingDiscard{}
		ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(sink), Size: logBufferSize, FlushInterval: accessFlushInterval}
		defer func() { _ = ws.Stop() }()
		encCfg := zap.NewProductionEncoderConfig()
		encCfg.TimeKey = "ts"
		encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
		logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encCfg), ws, zapcore.InfoLevel)).Named(accessLogger)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				line(logger)
			}
		})
		_ = ws.Sync()
		b.ReportMetric(float64(sink.writes)/float64(b.N), "writes/op")
	})
}
