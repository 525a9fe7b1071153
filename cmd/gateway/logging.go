package main

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/configs"
)

// Access log lines (logger "access", level info: one per HTTP request) are
// written in batches, every line of any other logger or level at once,
// flushing whatever access lines came before it so that the output keeps
// its order. On a busy front this saves a write(2) per request, which
// profiles put at about a tenth of the gateway's CPU per small request. An
// access line is at most accessFlushInterval late, and is lost only if the
// process is killed before that. The batching is zap's own
// BufferedWriteSyncer (BenchmarkAccessLog measured it as fast as the writer
// written here before it).
const (
	accessLogger        = "access"
	accessFlushInterval = 200 * time.Millisecond
	logBufferSize       = 64 << 10
)

// newLogger builds the process logger from log.level and log.format.
func newLogger(cfg configs.Log, w io.Writer) (*zap.Logger, error) {
	l, _, err := newLevelLogger(cfg, w)
	return l, err
}

// newLevelLogger is newLogger that also returns the level, which a
// configuration reload changes. The logger's Sync flushes the batched
// access lines; call it before exiting.
func newLevelLogger(cfg configs.Log, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	return newBatchingLogger(cfg, w, accessFlushInterval)
}

// newBatchingLogger is newLevelLogger with the access lines' flush interval.
func newBatchingLogger(cfg configs.Log, w io.Writer, interval time.Duration) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(string(cfg.Level))
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	level := zap.NewAtomicLevelAt(lvl)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == configs.LogConsole {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	// The sink's own Sync (an fsync, for a file) is not wanted after every
	// line: AddSync of a plain Writer makes it a no-op.
	out := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(struct{ io.Writer }{w}), Size: logBufferSize, FlushInterval: interval}
	core := &flushingCore{Core: zapcore.NewCore(enc, out, level), out: out}
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), level, nil
}

// flushingCore flushes the buffered output after every entry except the
// access log's info lines.
type flushingCore struct {
	zapcore.Core
	out zapcore.WriteSyncer
}

func (c *flushingCore) With(fields []zapcore.Field) zapcore.Core {
	return &flushingCore{Core: c.Core.With(fields), out: c.out}
}

func (c *flushingCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *flushingCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(ent, fields)
	if ent.LoggerName != accessLogger || ent.Level > zapcore.InfoLevel {
		if serr := c.out.Sync(); err == nil {
			err = serr
		}
	}
	return err
}
