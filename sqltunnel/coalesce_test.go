package sqltunnel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// writeLog is a destination that records each Write as one chunk.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	when   []time.Time
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	w.when = append(w.when, time.Now())
	w.mu.Unlock()
	return len(p), nil
}

func (w *writeLog) snapshot() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.writes...)
}

// packet is one TDS reply packet of size bytes, the last of its message
// when eom.
func packet(size int, eom bool, fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, size)
	h := tds.Header{Type: tds.PacketReply, Length: uint16(size)}
	if eom {
		h.Status = tds.StatusEOM
	}
	copy(p, h.AppendTo(nil))
	return p
}

// startCoalesce relays from the returned writer end to a writeLog.
func startCoalesce(t *testing.T, maxPacket int, smp bool) (src net.Conn, dst *writeLog, result chan error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	dst = &writeLog{}
	result = make(chan error, 1)
	var guard readGuard
	var n atomic.Int64
	go func() { result <- copyFramesCoalesced(dst, b, &guard, maxPacket, smp, &n) }()
	return a, dst, result
}

// TestCoalesceBackToBack: the packets of a message that arrive together
// leave in one Write; the message's last packet is never held back.
func TestCoalesceBackToBack(t *testing.T) {
	src, dst, result := startCoalesce(t, 4096, false)
	var msg []byte
	for i := range 8 {
		msg = append(msg, packet(4096, i == 7, byte(i))...)
	}
	// One write: all eight packets are there at once.
	if _, err := src.Write(msg); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, msg)
	if got := len(dst.snapshot()); got != 1 {
		t.Errorf("8 back-to-back packets took %d writes, want 1", got)
	}
	src.Close()
	if err := <-result; err != nil {
		t.Errorf("clean end: %v", err)
	}
}

// TestCoalesceNeverDelaysAReply: a lone EOM packet, and the packets of a
// message whose next packet is late, are written without waiting for more.
func TestCoalesceNeverDelaysAReply(t *testing.T) {
	src, dst, _ := startCoalesce(t, 4096, false)
	reply := packet(200, true, 1)
	if _, err := src.Write(reply); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, reply)

	// A message whose second packet comes 50 ms after the first: the first
	// goes out after at most coalesceWait, not with the second.
	first, second := packet(4096, false, 2), packet(100, true, 3)
	start := time.Now()
	if _, err := src.Write(first); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, append(append([]byte(nil), reply...), first...))
	if d := time.Since(start); d > 40*time.Millisecond {
		t.Errorf("the first packet of a slow message was held %v", d)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := src.Write(second); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, append(append(append([]byte(nil), reply...), first...), second...))
	if got := len(dst.snapshot()); got != 3 {
		t.Errorf("%d writes, want 3", got)
	}
}

// TestCoalescePartialFrame: complete packets are written even when the
// next one stops halfway; the rest follows when it arrives.
func TestCoalescePartialFrame(t *testing.T) {
	src, dst, _ := startCoalesce(t, 4096, false)
	p1, p2 := packet(4096, false, 1), packet(4096, true, 2)
	if _, err := src.Write(append(append([]byte(nil), p1...), p2[:1000]...)); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, p1)
	if _, err := src.Write(p2[1000:]); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, append(append([]byte(nil), p1...), p2...))
}

// TestCoalesceErrors: a malformed packet after good ones ends the relay
// with the framer's error once the good ones are out; a stream that ends
// inside a packet is an unexpected EOF.
func TestCoalesceErrors(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		src, dst, result := startCoalesce(t, 4096, false)
		good := packet(512, false, 1)
		bad := packet(8000, true, 2)
		go func() { _, _ = src.Write(append(append([]byte(nil), good...), bad...)) }()
		if err := <-result; !errors.Is(err, tds.ErrPacketTooLarge) {
			t.Errorf("err = %v, want ErrPacketTooLarge", err)
		}
		if got := bytes.Join(dst.snapshot(), nil); !bytes.Equal(got, good) {
			t.Errorf("wrote %d bytes before the error, want the %d of the good packet", len(got), len(good))
		}
	})
	t.Run("truncated", func(t *testing.T) {
		src, _, result := startCoalesce(t, 4096, false)
		if _, err := src.Write(packet(512, true, 1)[:300]); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := <-result; !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
}

// TestCoalesceSMP: with MARS, an SMP DATA packet carrying a message's last
// TDS packet, and SMP control packets, are written at once.
func TestCoalesceSMP(t *testing.T) {
	src, dst, _ := startCoalesce(t, 4096, true)
	smp := func(flags byte, inner []byte) []byte {
		h := make([]byte, smpHeaderLen)
		h[0], h[1] = smpID, flags
		l := smpHeaderLen + len(inner)
		h[4], h[5], h[6], h[7] = byte(l), byte(l>>8), byte(l>>16), byte(l>>24)
		return append(h, inner...)
	}
	data := smp(0x08, packet(300, true, 1))
	if _, err := src.Write(data); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, data)
	ack := smp(0x02, nil)
	if _, err := src.Write(ack); err != nil {
		t.Fatal(err)
	}
	waitWrites(t, dst, append(append([]byte(nil), data...), ack...))
}

// waitWrites waits until dst has received exactly want, in order.
func waitWrites(t *testing.T, dst *writeLog, want []byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := bytes.Join(dst.snapshot(), nil)
		if bytes.Equal(got, want) {
			return
		}
		if len(got) > len(want) || !bytes.Equal(got, want[:len(got)]) || time.Now().After(deadline) {
			t.Fatalf("relayed %d bytes, want %d (equal prefix: %v)", len(got), len(want), bytes.Equal(got, want[:min(len(got), len(want))]))
		}
		time.Sleep(time.Millisecond)
	}
}
