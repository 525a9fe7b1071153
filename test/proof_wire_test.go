//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/internal/testkit"
	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// The wire proof: tshark captures both legs of every client mode on the
// loopback interface, and the check reads the capture back — TCP payloads
// reassembled per direction, and tshark's own TDS and TLS dissectors — to
// show that no password (plain, UTF-16LE, LOGIN7-obfuscated), no query text
// and no LOGIN7 or SQL batch packet crosses either leg in clear. A plain session
// straight to a double is captured too, as the negative control: the same
// search must find the password and the LOGIN7 there.

// tshark is a running capture.
type tshark struct {
	cmd    *exec.Cmd
	bin    string
	file   string
	probe  int // a closed port in the filter
	probes int // probe connections seen in the file so far
	stderr *lineLog
	done   chan struct{}
}

// startTshark captures TCP on lo for ports into a pcapng file and returns
// once packets are being written: it probes probePort (a closed port in the
// filter) until the capture shows the probe.
func startTshark(t *testing.T, bin string, probePort int, ports ...int) *tshark {
	t.Helper()
	var filter []string
	for _, p := range append(ports, probePort) {
		filter = append(filter, fmt.Sprintf("tcp port %d", p))
	}
	file := filepath.Join(t.TempDir(), "capture.pcapng")
	cmd := exec.Command(bin, "-i", "lo", "-f", strings.Join(filter, " or "), "-w", file)
	// Its own process group: SIGINT then reaches dumpcap too, as Ctrl-C
	// would, and both flush the capture before exiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ts := &tshark{cmd: cmd, bin: bin, file: file, probe: probePort, stderr: newLineLog(), done: make(chan struct{})}
	cmd.Stderr = ts.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tshark: %v", err)
	}
	go func() { _ = cmd.Wait(); ts.stderr.close(); close(ts.done) }()
	t.Cleanup(func() { ts.stop(t) })
	testkit.Eventually(t, 60*time.Second, "tshark capturing", func() error {
		select {
		case <-ts.done:
			t.Fatalf("tshark exited: %s", strings.Join(ts.stderr.all(), "\n"))
		default:
		}
		if !slices.ContainsFunc(ts.stderr.all(), func(l string) bool { return strings.Contains(l, "Capturing on") }) {
			return fmt.Errorf("not capturing yet")
		}
		return nil
	})
	ts.sync(t)
	return ts
}

// sync connects to the probe port and waits until the capture file holds
// that connection: packets are written in order, so everything sent before
// is in the file too. (libpcap hands packets over in blocks, up to a
// timeout later; stopping right after the traffic would lose them.)
func (ts *tshark) sync(t *testing.T) {
	t.Helper()
	ts.probes++
	want := ts.probes
	testkit.Eventually(t, 60*time.Second, "the capture catching up with probe "+strconv.Itoa(want), func() error {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ts.probe), time.Second); err == nil {
			c.Close()
		}
		out, err := exec.Command(ts.bin, "-r", ts.file, "-Y", fmt.Sprintf("tcp.dstport==%d && tcp.flags.syn==1", ts.probe), "-T", "fields", "-e", "frame.number").Output()
		if err != nil {
			return fmt.Errorf("reading the capture: %v", err)
		}
		if n := len(strings.Fields(string(out))); n < want {
			return fmt.Errorf("%d probes in the capture, want %d", n, want)
		}
		return nil
	})
	// Retried probes count too: the next sync waits for one more.
	out, _ := exec.Command(ts.bin, "-r", ts.file, "-Y", fmt.Sprintf("tcp.dstport==%d && tcp.flags.syn==1", ts.probe), "-T", "fields", "-e", "frame.number").Output()
	ts.probes = max(ts.probes, len(strings.Fields(string(out))))
}

// stop ends the capture (SIGINT: tshark finishes the file) and waits.
func (ts *tshark) stop(t *testing.T) {
	select {
	case <-ts.done:
		return
	default:
	}
	_ = syscall.Kill(-ts.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-ts.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-ts.cmd.Process.Pid, syscall.SIGKILL)
		<-ts.done
	}
}

// tcpDirection is the payload one side of one TCP connection sent.
type tcpDirection struct {
	stream  int
	src     int // source port
	dst     int // destination port
	payload []byte
}

// tsharkPayloads reassembles the capture per TCP direction (retransmitted
// segments left out).
func tsharkPayloads(t *testing.T, bin, file string) []tcpDirection {
	t.Helper()
	out, err := exec.Command(bin, "-r", file, "-Y", "tcp.len > 0 && !tcp.analysis.retransmission",
		"-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.payload").Output()
	if err != nil {
		t.Fatalf("tshark -r: %v", err)
	}
	type key struct{ stream, src int }
	dirs := map[key]*tcpDirection{}
	var order []key
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			continue
		}
		stream, _ := strconv.Atoi(f[0])
		src, _ := strconv.Atoi(f[1])
		dst, _ := strconv.Atoi(f[2])
		b, err := hex.DecodeString(strings.ReplaceAll(f[3], ":", ""))
		if err != nil {
			t.Fatalf("tshark payload: %v", err)
		}
		k := key{stream, src}
		d, ok := dirs[k]
		if !ok {
			d = &tcpDirection{stream: stream, src: src, dst: dst}
			dirs[k] = d
			order = append(order, k)
		}
		d.payload = append(d.payload, b...)
	}
	var list []tcpDirection
	for _, k := range order {
		list = append(list, *dirs[k])
	}
	return list
}

// dissectedRow is one frame as a tshark dissector saw it: its TCP stream,
// ports and the type bytes it decoded (TDS packet types, or TLS record
// content types).
type dissectedRow struct {
	stream, src, dst int
	types            []int
}

// tsharkDissect decodes ports with the named dissector ("tds" or "tls")
// and returns, per frame, the values of the given type fields.
func tsharkDissect(t *testing.T, bin, file, proto string, ports []int, fields ...string) []dissectedRow {
	t.Helper()
	args := []string{"-r", file}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("tcp.port==%d,%s", p, proto))
	}
	args = append(args, "-Y", proto, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.dstport")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("tshark -r (%s): %v", proto, err)
	}
	var rows []dissectedRow
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimRight(line, "\r\n"), "\t")
		if len(f) != 3+len(fields) {
			continue
		}
		r := dissectedRow{}
		r.stream, _ = strconv.Atoi(f[0])
		r.src, _ = strconv.Atoi(f[1])
		r.dst, _ = strconv.Atoi(f[2])
		for _, col := range f[3:] {
			for v := range strings.SplitSeq(col, ",") {
				if n, err := strconv.ParseInt(v, 0, 32); err == nil {
					r.types = append(r.types, int(n))
				}
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func hexList(l []int) string {
	var parts []string
	for _, n := range l {
		parts = append(parts, fmt.Sprintf("0x%02x", n))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestVerifyWire is the tshark wire proof (make verify; needs root to
// capture on lo).
func TestVerifyWire(t *testing.T) {
	proofLong(t)
	row := proofRow(t, "wire proof: tshark capture of both legs, every client mode")
	if os.Geteuid() != 0 {
		t.Skip("capturing on lo needs root: run make verify as root (CI does)")
	}
	bin := proofTool(t, "tshark", "the Debian package tshark")

	// Leg 2 in both TDS dialects: a forcing double (TDS 7.x TLS inside
	// PRELOGIN) and a strict one (TDS 8), each behind its own gateway.
	b7 := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptForced})
	cfg7 := newProofSQLConfig(t, "required", b7.addr(), b7.caFile)
	cfg7.SQL[0].Hostname = "localhost"
	g7 := startProofGateway(t, cfg7)
	b8 := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptStrict})
	cfg8 := newProofSQLConfig(t, "required", b8.addr(), b8.caFile)
	cfg8.SQL[0].Hostname = "localhost"
	cfg8.SQL[0].Upstream.Encryption = "strict"
	g8 := startProofGateway(t, cfg8)
	// The control: a double that lets a client log in without TLS.
	plain := newProofSQLBackend(t, tdstest.Config{Encryption: tdstest.EncryptOff})

	port := func(addr string) int { p, _ := strconv.Atoi(proofPort(addr)); return p }
	encrypted := []int{port(g7.sqlAddr), port(b7.addr()), port(g8.sqlAddr), port(b8.addr())}
	controlPort := port(plain.addr())
	probe := port(closedPortAddr(t))
	ts := startTshark(t, bin, probe, append(encrypted, controlPort)...)

	ctx := proofCtx(t, 5*time.Minute)
	dsnFor := func(addr, root, encrypt string) string {
		return strings.Replace(proofDSN(addr, root, encrypt), "hostnameincertificate="+proofSQLHost, "hostnameincertificate=localhost", 1)
	}
	var modes []string
	for _, encrypt := range []string{"false", "true", "strict"} {
		for _, g := range []*proofGateway{g7, g8} {
			if err := proofSelect(ctx, t, dsnFor(g.sqlAddr, g.rootFile, encrypt)); err != nil {
				t.Fatalf("go-mssqldb encrypt=%s via %s: %v", encrypt, g.sqlAddr, err)
			}
		}
		modes = append(modes, "go-mssqldb "+encrypt)
	}
	if tsql, err := exec.LookPath("tsql"); err == nil {
		dir := t.TempDir()
		conf := writeFile(t, dir, "freetds.conf", []byte("[global]\n\ttds version = 7.4\n\tca file = "+g7.rootFile+"\n"))
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		cmd := exec.CommandContext(cctx, tsql, "-H", "localhost", "-p", proofPort(g7.sqlAddr), "-U", proofSQLUser, "-P", proofSQLPassword)
		cmd.Stdin = strings.NewReader(proofQuery + "\ngo\nexit\n")
		cmd.Env = append(os.Environ(), "FREETDSCONF="+conf, "TDSVER=7.4", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "918273645") {
			t.Fatalf("FreeTDS tsql (default encryption) via the gateway: %v\n%s", err, out)
		}
		modes = append(modes, "FreeTDS default")
	} else {
		t.Log("tsql not found (Debian freetds-bin): FreeTDS mode not captured")
	}
	// The control, in clear on purpose.
	if err := proofSelect(ctx, t, proofDSN(plain.addr(), b7.caFile, "disable")); err != nil {
		t.Fatalf("control: plain login to the double: %v", err)
	}
	proofWaitUpstreamIdle(t, b7, len(modes))
	proofWaitUpstreamIdle(t, b8, 3)
	proofWaitUpstreamIdle(t, plain, 1)
	ts.sync(t)
	ts.stop(t)

	secrets := append(proofWireForms("password", proofSQLPassword, true), proofWireForms("query", proofQuery, false)...)
	var encBytes, encDirs, records int
	controlHits := map[string]bool{}
	dialect := map[int]byte{} // TCP stream → first byte the client sent: 0x12 TDS 7.x, 0x16 TDS 8
	for _, d := range tsharkPayloads(t, bin, ts.file) {
		if slices.Contains(encrypted, d.dst) && len(d.payload) > 0 {
			dialect[d.stream] = d.payload[0]
		}
		switch {
		case d.src == controlPort || d.dst == controlPort:
			for _, h := range proofFind(d.payload, secrets) {
				controlHits[h] = true
			}
		case slices.Contains(encrypted, d.src) || slices.Contains(encrypted, d.dst):
			encDirs++
			encBytes += len(d.payload)
			if hits := proofFind(d.payload, secrets); len(hits) > 0 {
				t.Errorf("stream %d %d→%d carries %v in clear", d.stream, d.src, d.dst, hits)
			}
			rep := proofAnalyzeLeg(d.payload)
			records += rep.tlsRecords
			if len(rep.violations) > 0 {
				t.Errorf("stream %d %d→%d: %s", d.stream, d.src, d.dst, rep)
			}
		}
	}
	if !controlHits["password (LOGIN7-obfuscated UTF-16LE)"] || !controlHits["query (UTF-16LE)"] {
		t.Errorf("negative control: the plain session's capture shows only %v; the search is blind", controlHits)
	}
	if encDirs < 2*2*len(modes) || records == 0 {
		t.Errorf("only %d encrypted directions, %d TLS records captured: the capture missed the sessions", encDirs, records)
	}

	// tshark's dissectors, as a second opinion on every session. A TDS 7.x
	// session (it opens with PRELOGIN 0x12) is read with the TDS dissector,
	// which hands the stream to its TLS dissector after the handshake: only
	// PRELOGIN (0x12) and its answer (0x04) may appear, never LOGIN7 (0x10),
	// SQL batch (0x01), RPC (0x03), attention (0x06), transaction manager
	// (0x0E) or SSPI (0x11). A TDS 8 session is TLS from its first byte;
	// the TDS dissector would read TLS record headers as TDS headers and
	// walk into ciphertext, so it is read with the TLS dissector instead:
	// handshake, then application data, nothing but TLS record types. The
	// control leg must show LOGIN7 and a batch.
	clearOnly := []int{0x01, 0x03, 0x06, 0x0E, 0x10, 0x11}
	var encTypes, controlTypes, tds8Types []int
	add := func(l *[]int, v int) {
		if !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
	}
	for _, r := range tsharkDissect(t, bin, ts.file, "tds", append(encrypted, controlPort), "tds.type") {
		switch {
		case r.dst == controlPort:
			for _, typ := range r.types {
				add(&controlTypes, typ)
			}
		case r.src == controlPort || dialect[r.stream] != 0x12:
		default:
			for _, typ := range r.types {
				add(&encTypes, typ)
				if slices.Contains(clearOnly, typ) {
					t.Errorf("tshark decodes a TDS 0x%02x packet in clear on %d→%d (TCP stream %d)", typ, r.src, r.dst, r.stream)
				}
			}
		}
	}
	tds8Streams := map[int][]int{}
	for _, r := range tsharkDissect(t, bin, ts.file, "tls", encrypted, "tls.record.content_type", "tls.record.opaque_type") {
		if dialect[r.stream] != 0x16 {
			continue
		}
		l := tds8Streams[r.stream]
		for _, typ := range r.types {
			add(&l, typ)
			add(&tds8Types, typ)
			if typ < 20 || typ > 23 {
				t.Errorf("tshark's TLS dissector reads record type %d on the TDS 8 session %d→%d (TCP stream %d)", typ, r.src, r.dst, r.stream)
			}
		}
		tds8Streams[r.stream] = l
	}
	for s, d := range dialect {
		if d != 0x16 {
			continue
		}
		if l := tds8Streams[s]; !slices.Contains(l, 22) || !slices.Contains(l, 23) {
			t.Errorf("TDS 8 session (TCP stream %d): tshark's TLS dissector saw record types %v, want a handshake (22) and application data (23)", s, l)
		}
	}
	if len(tds8Streams) == 0 {
		t.Errorf("no TDS 8 session captured: the strict mode was not exercised")
	}
	slices.Sort(encTypes)
	slices.Sort(controlTypes)
	slices.Sort(tds8Types)
	if !slices.Contains(controlTypes, 0x10) || !slices.Contains(controlTypes, 0x01) {
		t.Errorf("negative control: tshark saw TDS types %s from the plain client, want LOGIN7 0x10 and SQL batch 0x01", hexList(controlTypes))
	}
	row.set("%s (upstream TDS 7.x and TDS 8): %d TCP directions, %d bytes, %d TLS records, 0 secrets in clear; tshark: TDS 7.x sessions show TDS types %s only, %d TDS 8 sessions TLS record types %v only; control (plain session): %d secret forms and TDS types %s found",
		strings.Join(modes, ", "), encDirs, encBytes, records, hexList(encTypes), len(tds8Streams), tds8Types, len(controlHits), hexList(controlTypes))
}
