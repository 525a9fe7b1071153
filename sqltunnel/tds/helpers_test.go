package tds

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture returns the bytes of testdata/spec/name: hex pairs, with '#'
// comment lines naming the MS-TDS section they were transcribed from.
func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", "spec", name))
	if err != nil {
		tb.Fatal(err)
	}
	return parseHexDump(tb, string(text))
}

func parseHexDump(tb testing.TB, text string) []byte {
	tb.Helper()
	var sb strings.Builder
	for line := range strings.Lines(text) {
		if line, _, _ = strings.Cut(line, "#"); line != "" {
			sb.WriteString(strings.Join(strings.Fields(line), ""))
		}
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// payloadOf returns the payload of a single-packet fixture, checking that
// its header is consistent.
func payloadOf(tb testing.TB, pkt []byte) (Header, []byte) {
	tb.Helper()
	h, err := ParseHeader(pkt)
	if err != nil {
		tb.Fatal(err)
	}
	if int(h.Length) != len(pkt) {
		tb.Fatalf("fixture header length %d, fixture has %d bytes", h.Length, len(pkt))
	}
	return h, pkt[HeaderLen:]
}
