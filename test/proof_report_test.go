package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// The proof suite (GitHub issue "Proof suite") is made of checks that fail
// when a security property breaks. Fast checks (TestProof*) run in every
// `go test`; long ones (TestVerify*: testssl, h2spec, faults, tshark) skip
// unless GATEWAY_PROOF_LONG=1, which `make verify` (test/verify) sets.
//
// Each check records one row of the verify table — check, figure, verdict —
// in the JSON-lines file named by GATEWAY_PROOF_REPORT, when it is set. The
// verdict is decided when the test ends: FAIL if it failed, SKIP if it
// skipped, else PASS.

// proofRowData is one row of the verify table, as test/verify reads it.
type proofRowData struct {
	Check   string `json:"check"`
	Figure  string `json:"figure"`
	Verdict string `json:"verdict"` // PASS | FAIL | SKIP
	Test    string `json:"test"`
}

var proofReportMu sync.Mutex

// writeProofRow appends r to $GATEWAY_PROOF_REPORT, if set.
func writeProofRow(r proofRowData) {
	path := os.Getenv("GATEWAY_PROOF_REPORT")
	if path == "" {
		return
	}
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	proofReportMu.Lock()
	defer proofReportMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proof report:", err)
		return
	}
	defer f.Close()
	_, _ = f.Write(append(data, '\n'))
}

// proofCheck is a row being measured by a test.
type proofCheck struct {
	mu     sync.Mutex
	figure string
}

// set records the figure of the row (the last call wins).
func (c *proofCheck) set(format string, args ...any) {
	c.mu.Lock()
	c.figure = fmt.Sprintf(format, args...)
	c.mu.Unlock()
}

// proofRow starts a row named check for test t; it is written when t ends,
// with t's verdict. Call it before anything that may skip.
func proofRow(t *testing.T, check string) *proofCheck {
	t.Helper()
	c := &proofCheck{}
	t.Cleanup(func() {
		verdict := "PASS"
		switch {
		case t.Failed():
			verdict = "FAIL"
		case t.Skipped():
			verdict = "SKIP"
		}
		c.mu.Lock()
		fig := c.figure
		c.mu.Unlock()
		if fig == "" && verdict == "FAIL" {
			fig = "see the test log"
		}
		writeProofRow(proofRowData{Check: check, Figure: fig, Verdict: verdict, Test: t.Name()})
	})
	return c
}

// proofLong skips t unless the long proofs were asked for.
func proofLong(t *testing.T) {
	t.Helper()
	if os.Getenv("GATEWAY_PROOF_LONG") == "" {
		t.Skip("long proof: runs in `make verify` (GATEWAY_PROOF_LONG=1)")
	}
}

// proofTool returns the path of an external tool, or skips t naming the
// package to install. With GATEWAY_PROOF_LONG set, a missing tool fails the
// check instead: `make verify` must not pass without running it.
func proofTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("GATEWAY_PROOF_LONG") != "" {
		t.Fatalf("%s not found: install %s", name, install)
	}
	t.Skipf("%s not found: install %s", name, install)
	return ""
}
