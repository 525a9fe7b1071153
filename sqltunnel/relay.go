package sqltunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// relay copies frames both ways until both sides are done, then logs the
// session's end. Each direction has its own goroutine and one pooled
// buffer while data moves. Toward SQL Server each TDS packet (or SMP
// packet, with MARS) goes in a single Write: with TLS, a packet must not be
// split over records written at different times (SQL Server drops the
// connection). Toward the client, complete packets that arrive back to back
// are written together (coalesce.go), and a packet that ends a message at
// once. Attention packets (0x06) and streamed results flow in both
// directions at once, never lock-step.
//
// When one side finishes sending (EOF), the other side's write half is
// closed (TLS close_notify, then TCP FIN) and its remaining output gets
// halfCloseTimeout to arrive. Any error closes both sides at once.
func (s *session) relay(client, upstream leg, maxPacket int, smp bool) {
	type result struct {
		from string
		err  error
	}
	done := make(chan result, 2)
	var guard readGuard // the upstream leg's read deadlines
	pipe := func(from string, dst leg, run func() error) {
		var err error
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic in the relay; closing the session", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
			done <- result{from, err}
		}()
		if err = run(); err == nil {
			dst.closeWrite()
		}
	}
	go pipe("client", upstream, func() error {
		f := newFramer(client.conn, maxPacket, smp)
		defer f.release()
		return copyFrames(upstream.conn, f, &s.toUpstream)
	})
	go pipe("upstream", client, func() error {
		return copyFramesCoalesced(client.conn, upstream.conn, &guard, maxPacket, smp, &s.toClient)
	})

	first := <-done
	if first.err != nil {
		s.closeAll()
	} else {
		// The other side may still be sending its last reply.
		if first.from == "client" {
			guard.setFinal(upstream.conn, time.Now().Add(halfCloseTimeout))
		} else {
			_ = client.conn.SetReadDeadline(time.Now().Add(halfCloseTimeout))
		}
	}
	second := <-done
	s.closeAll()

	fields := []zap.Field{
		zap.Int64("bytes_to_upstream", s.toUpstream.Load()),
		zap.Int64("bytes_to_client", s.toClient.Load()),
		zap.Duration("duration", time.Since(s.start)),
		zap.String("closed_by", first.from),
	}
	// Report the error that ended the session; the other side then only
	// saw its connection closed.
	for _, r := range []result{first, second} {
		if r.err == nil || benign(r.err) {
			continue
		}
		fields = append(fields, zap.NamedError("reason", r.err))
		if errors.Is(r.err, errBadFrame) || isCodecError(r.err) {
			s.log.Warn("sql session closed on malformed input from the "+r.from, fields...)
			return
		}
		break
	}
	s.log.Info("sql session closed", fields...)
}

// copyFrames reads frames from f and writes each to dst in one Write. It
// returns nil when the source ends cleanly between frames.
// n counts the bytes written (a *byteCount, or an *atomic.Int64).
func copyFrames(dst net.Conn, f *framer, n interface{ Add(int64) int64 }) error {
	for {
		frame, err := f.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if _, err := dst.Write(frame); err != nil {
			return err
		}
		n.Add(int64(len(frame)))
	}
}

// isCodecError reports framing errors from the TDS codec.
func isCodecError(err error) bool {
	return errors.Is(err, tds.ErrBadLength) || errors.Is(err, tds.ErrPacketTooLarge) || errors.Is(err, tds.ErrShortHeader)
}

// benign reports errors that are a normal way for a session to end: a
// closed connection, a reset, a deadline after a half-close.
func benign(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		(errors.As(err, &ne) && ne.Timeout()) || isReset(err)
}
