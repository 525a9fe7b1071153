package tdstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

type tediousResult struct {
	Event   string `json:"event"`
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Code    string `json:"code"`
	Results struct {
		Select1     int      `json:"select1"`
		Version     string   `json:"version"`
		Rows        []string `json:"rows"`
		NRows       []string `json:"nrows"`
		Cancel      string   `json:"cancel"`
		AfterCancel int      `json:"afterCancel"`
	} `json:"results"`
}

// runTedious runs testdata/node/client.js against the fixture. encrypt is
// true, false or "strict". With cancel it answers the script's
// "waitfor-sent" event once the server holds the WAITFOR.
func runTedious(t *testing.T, f *fixture, encrypt any, cancel bool) tediousResult {
	t.Helper()
	node := lookPath(t, "node", "nodejs")
	dir, err := filepath.Abs(filepath.Join("testdata", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "tedious", "package.json")); err != nil {
		missingClient(t, "tedious missing: run `npm ci` in %s (npm package tedious@19)", dir)
	}
	cfg, err := json.Marshal(map[string]any{
		"host": testHost, "port": f.srv.Port(), "user": testUser,
		"encrypt": encrypt, "ca": f.rootFile, "cancel": cancel,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(testContext(t), time.Minute)
	defer stop()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "client.js"), string(cfg))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TDSTEST_PASSWORD="+testPassword)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last tediousResult
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var line tediousResult
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Errorf("tedious client printed %q: %v", sc.Bytes(), err)
			continue
		}
		if line.Event == "waitfor-sent" {
			if _, err := f.srv.Wait(ctx, hasRequest("WAITFOR")); err != nil {
				t.Error(err)
			}
			_, _ = io.WriteString(stdin, "cancel\n")
			_ = stdin.Close()
			continue
		}
		last = line
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tedious client: %v\nstderr: %s", err, &stderr)
	}
	if !last.OK && last.Error == "" {
		t.Fatalf("tedious client printed no result; stderr: %s", &stderr)
	}
	return last
}

func TestTediousEncryptionMatrix(t *testing.T) {
	tests := []struct {
		name    string
		encrypt any
		server  Encryption
		cancel  bool
		ok      bool
		client  tds.Encryption
		mode    Mode
		outcome Outcome
	}{
		{"true/off", true, EncryptOff, false, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		{"true/forced", true, EncryptForced, true, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		// tedious 19 with encrypt: true carries on in clear text when the
		// server answers NOT_SUP (connection.js performTlsNegotiation only
		// starts TLS on ON or REQ): the login crosses unencrypted.
		{"true/not_supported", true, EncryptNotSupported, false, true, tds.EncryptOn, ModeNone, OutcomeClosed},
		{"true/strict", true, EncryptStrict, false, false, 0, ModeUnset, OutcomeRefused},
		{"false/off", false, EncryptOff, true, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
		{"false/not_supported", false, EncryptNotSupported, false, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
		{"false/forced", false, EncryptForced, false, false, tds.EncryptNotSup, ModeUnset, OutcomeRefused},
		{"strict/off", "strict", EncryptOff, false, true, tds.EncryptNotSup, ModeStrict, OutcomeClosed},
		{"strict/forced", "strict", EncryptForced, false, true, tds.EncryptNotSup, ModeStrict, OutcomeClosed},
		{"strict/strict", "strict", EncryptStrict, true, true, tds.EncryptNotSup, ModeStrict, OutcomeClosed},
		{"strict/not_supported", "strict", EncryptNotSupported, false, false, 0, ModeUnset, OutcomeRefused},
	}
	// Strict: tedious sends NOT_SUP inside TLS (the value is ignored in TDS
	// 8, MS-TDS 2.2.6.5).
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: tc.server})
			res := runTedious(t, f, tc.encrypt, tc.cancel)
			rec := f.waitOne(t, 1)
			if !tc.ok {
				if res.OK {
					t.Fatalf("tedious succeeded, want failure: %+v", res)
				}
				t.Logf("tedious error (expected): %s %s", res.Code, res.Error)
				if rec.Outcome != tc.outcome || rec.LoggedIn {
					t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
				}
				return
			}
			if !res.OK {
				t.Fatalf("tedious: %s %s", res.Code, res.Error)
			}
			r := res.Results
			if r.Select1 != 1 || r.Version != DefaultVersion || len(r.Rows) != 3 || len(r.NRows) != 2 {
				t.Fatalf("results %+v", r)
			}
			for i, h := range r.Rows {
				if want := hex.EncodeToString(expectedValue(false, int64(i), 10)); h != want {
					t.Errorf("row %d: %s, want %s", i, h, want)
				}
			}
			if r.NRows[0] != "abcde:5000" || r.NRows[1] != "bcdef:5000" {
				t.Errorf("nrows %q", r.NRows)
			}
			if tc.cancel && (r.Cancel != "ECANCEL" || r.AfterCancel != 2) {
				t.Errorf("cancel: %q then SELECT 2 = %d, want ECANCEL then 2", r.Cancel, r.AfterCancel)
			}
			checkRecord(t, rec, tc.client, tc.mode)
			if rec.Outcome != tc.outcome || rec.Err != nil {
				t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
			}
			if rec.AppName != "tdstest-tedious" || rec.Library != "Tedious" {
				t.Errorf("app %q library %q", rec.AppName, rec.Library)
			}
			var rpcs int
			for _, q := range rec.Requests {
				if q.Proc == "sp_executesql" {
					rpcs++
				}
			}
			if rpcs != 2 {
				t.Errorf("%d sp_executesql calls, want 2: %+v", rpcs, rec.Requests)
			}
		})
	}
}
