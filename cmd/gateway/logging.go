package main

import (
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/configs"
)

// newLogger builds the process logger from log.level and log.format.
func newLogger(cfg configs.Log, w io.Writer) (*zap.Logger, error) {
	l, _, err := newLevelLogger(cfg, w)
	return l, err
}

// newLevelLogger is newLogger that also returns the level, which a
// configuration reload changes.
func newLevelLogger(cfg configs.Log, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	level := zap.NewAtomicLevelAt(lvl)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w))), level, nil
}
