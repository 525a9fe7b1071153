package proxy

import (
	"log"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newStdLog bridges the *log.Logger of net/http and httputil to zap. Their
// messages are free text; the few that matter are recognised and given a
// constant message and a level: TLS handshake failures are debug (scanners
// and clients that distrust the certificate make them all day), accept
// failures warn, handler panics are errors, everything else is debug.
//
// onHandshake, when not nil, is told the text of each failed TLS handshake
// (for the handshake metrics).
func newStdLog(l *zap.Logger, onHandshake func(detail string)) *log.Logger {
	return log.New(stdlogWriter{l, onHandshake}, "", 0)
}

type stdlogWriter struct {
	log         *zap.Logger
	onHandshake func(detail string)
}

const handshakePrefix = "http: TLS handshake error from "

func (w stdlogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(msg, handshakePrefix):
		remote, detail, _ := strings.Cut(msg[len(handshakePrefix):], ": ")
		if w.onHandshake != nil {
			w.onHandshake(detail)
		}
		if ce := w.log.Check(zapcore.DebugLevel, "tls handshake failed"); ce != nil {
			ce.Write(zap.String("remote", remote), zap.String("error", detail))
		}
	case strings.HasPrefix(msg, "http: Accept error"):
		w.log.Warn("accept failed", zap.String("detail", msg))
	case strings.Contains(msg, "panic serving"):
		w.log.Error("handler panicked", zap.String("detail", msg))
	default:
		w.log.Debug("http server message", zap.String("detail", msg))
	}
	return len(p), nil
}
