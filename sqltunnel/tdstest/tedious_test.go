package tdstest

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// runTedious runs tedious against the fixture. encrypt is true, false or
// "strict". With cancel it lets the script cancel its WAITFOR once the
// server holds it.
func runTedious(t *testing.T, f *fixture, encrypt any, cancel bool) clients.Result {
	t.Helper()
	if _, _, err := clients.TediousSetup(); err != nil {
		missingClient(t, "%v", err)
	}
	ctx, stop := context.WithTimeout(testContext(t), time.Minute)
	defer stop()
	res, err := clients.Tedious{
		Host: testHost, Port: f.srv.Port(), User: testUser, Password: testPassword,
		Encrypt: encrypt, CAFile: f.rootFile, Cancel: cancel,
		OnWaitforSent: func() error {
			_, err := f.srv.Wait(ctx, hasRequest("WAITFOR"))
			return err
		},
	}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
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
