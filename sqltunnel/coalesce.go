package sqltunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// The server-to-client direction of the relay writes several complete TDS
// packets at once when more are already arriving: a rowset streams as
// back-to-back packets, and one Write (one system call, TLS records of up to
// 16 KiB) for several of them costs far less than one each. Clients accept
// packets spread over or packed into TLS records as they come; SQL Server
// does not, so the client-to-server direction keeps one packet per Write.
//
// The gathering never delays a reply: a packet that ends its message (EOM)
// is written with what came before it at once, and between the packets of a
// message the relay waits at most coalesceWait for the next one.

const (
	// coalesceWait bounds the wait for the next packet of an unfinished
	// message before the packets read so far are written.
	coalesceWait = 200 * time.Microsecond
	// coalesceSize is how many bytes of complete packets are written at
	// most in one Write.
	coalesceSize = 64 << 10
)

// coalescePool holds the gathering buffers: one per direction that is
// moving data; an idle session holds none.
var coalescePool = sync.Pool{New: func() any { return new([coalesceSize + maxFrame]byte) }}

// readGuard orders the gatherer's short read deadlines with the relay's
// half-close deadline on the same connection: once the relay has set its
// deadline (final), the gatherer no longer touches the connection's
// deadlines and stops waiting for more packets.
type readGuard struct {
	mu    sync.Mutex
	final bool
}

// setFinal sets c's read deadline for the half-close.
func (g *readGuard) setFinal(c net.Conn, t time.Time) {
	g.mu.Lock()
	g.final = true
	_ = c.SetReadDeadline(t)
	g.mu.Unlock()
}

// readBriefly reads into b, waiting at most coalesceWait; waited is true
// when nothing more came in time (or the relay's half-close deadline is
// set). A timeout is not an error: crypto/tls treats read timeouts as
// temporary and the stream goes on.
func (g *readGuard) readBriefly(c net.Conn, b []byte) (n int, waited bool, err error) {
	g.mu.Lock()
	if g.final {
		g.mu.Unlock()
		return 0, true, nil
	}
	_ = c.SetReadDeadline(time.Now().Add(coalesceWait))
	g.mu.Unlock()
	n, err = c.Read(b)
	g.mu.Lock()
	if !g.final {
		_ = c.SetReadDeadline(time.Time{})
	}
	g.mu.Unlock()
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, true, nil
	}
	return n, false, err
}

// frameInfo returns the length of the frame at the start of b and whether it
// ends a message; length 0 means b does not hold the frame's header yet. It
// checks what framer.next checks.
func frameInfo(b []byte, maxPacket int, smp bool) (length int, eom bool, err error) {
	if len(b) < tds.HeaderLen {
		return 0, false, nil
	}
	if smp && b[0] == smpID {
		if len(b) < smpHeaderLen {
			return 0, false, nil
		}
		l := binary.LittleEndian.Uint32(b[4:8])
		if l < smpHeaderLen || l > uint32(smpHeaderLen+maxPacket) {
			return 0, false, fmt.Errorf("SMP packet length %d outside %d..%d: %w", l, smpHeaderLen, smpHeaderLen+maxPacket, errBadFrame)
		}
		// A DATA packet ends a message when the TDS packet it carries
		// does; control packets (SYN, ACK, FIN) are written at once.
		const smpData = 0x08
		if b[1] != smpData {
			return int(l), true, nil
		}
		return int(l), len(b) > smpHeaderLen+1 && tds.Status(b[smpHeaderLen+1])&tds.StatusEOM != 0, nil
	}
	h, err := tds.ParseHeader(b[:tds.HeaderLen])
	if err != nil {
		return 0, false, err
	}
	if int(h.Length) > maxPacket {
		return 0, false, fmt.Errorf("%s packet length %d > %d: %w", h.Type, h.Length, maxPacket, tds.ErrPacketTooLarge)
	}
	return int(h.Length), h.EOM(), nil
}

// copyFramesCoalesced is copyFrames for the server-to-client direction:
// it reads frames from src and writes complete ones to dst, several in one
// Write when the next ones arrive within coalesceWait. It returns nil when
// src ends cleanly between frames.
func copyFramesCoalesced(dst, src net.Conn, g *readGuard, maxPacket int, smp bool, n interface{ Add(int64) int64 }) error {
	var first [tds.HeaderLen]byte
	for {
		// Between bursts, wait for the next frame without a buffer.
		if _, err := io.ReadFull(src, first[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		buf := coalescePool.Get().(*[coalesceSize + maxFrame]byte)
		copy(buf[:], first[:])
		err := gather(dst, src, g, buf[:], tds.HeaderLen, maxPacket, smp, n)
		coalescePool.Put(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// gather runs one burst: buf holds have bytes read from src. It returns
// nil once everything read has been written (back to waiting between
// bursts), io.EOF when src ended cleanly after the last complete frame.
func gather(dst, src net.Conn, g *readGuard, buf []byte, have, maxPacket int, smp bool, n interface{ Add(int64) int64 }) error {
	done := 0         // bytes of complete frames at the start of buf
	eom := false      // the last complete frame ends a message
	waited := false   // the last brief read found nothing more
	var readErr error // ends the burst once the complete frames are out
	for {
		for {
			l, end, err := frameInfo(buf[done:have], maxPacket, smp)
			if err != nil {
				readErr = err
				break
			}
			if l == 0 || done+l > have {
				break
			}
			done += l
			eom = end
		}
		if done > 0 && (eom || waited || readErr != nil || done >= coalesceSize) {
			if _, err := dst.Write(buf[:done]); err != nil {
				return err
			}
			n.Add(int64(done))
			have = copy(buf, buf[done:have])
			done, eom, waited = 0, false, false
		}
		switch {
		case readErr != nil:
			if errors.Is(readErr, io.EOF) && have > 0 {
				return io.ErrUnexpectedEOF // inside a frame
			}
			return readErr
		case have == 0:
			return nil
		}
		var m int
		var err error
		if done == 0 {
			// A frame is incomplete: it is on its way.
			m, err = src.Read(buf[have:])
		} else {
			m, waited, err = g.readBriefly(src, buf[have:])
		}
		have += m
		if err != nil {
			readErr = err
		}
	}
}
