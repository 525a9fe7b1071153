package tdstest

import (
	"encoding/hex"
	"slices"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// runPytds runs pytds against the fixture; args are the script's options
// (--cafile FILE, --login-only). With a CA file pytds checks the host name,
// so it connects by testHost.
func runPytds(t *testing.T, f *fixture, args ...string) clients.Result {
	t.Helper()
	if err := clients.PytdsSetup(); err != nil {
		missingClient(t, "%v", err)
	}
	host := "127.0.0.1"
	if slices.Contains(args, "--cafile") {
		host = testHost // pytds matches the host name against the certificate's CN or DNS names
	}
	res, err := clients.Pytds{Host: host, Port: f.srv.Port(), User: testUser, Password: testPassword, Args: args}.Run(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestPytdsEncryptionMatrix(t *testing.T) {
	noCA := []string{}
	tests := []struct {
		name    string
		cafile  bool
		args    []string
		server  Encryption
		ok      bool
		client  tds.Encryption
		mode    Mode
		outcome Outcome
	}{
		{"plain/off", false, noCA, EncryptOff, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
		{"plain/not_supported", false, noCA, EncryptNotSupported, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
		{"plain/forced", false, noCA, EncryptForced, false, tds.EncryptNotSup, ModeUnset, OutcomeRefused},
		{"plain/strict", false, noCA, EncryptStrict, false, 0, ModeUnset, OutcomeRefused},
		{"cafile/off", true, nil, EncryptOff, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		{"cafile/forced", true, nil, EncryptForced, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		{"cafile/not_supported", true, nil, EncryptNotSupported, false, tds.EncryptOn, ModeNone, OutcomeAborted},
		{"login_only/off", true, []string{"--login-only"}, EncryptOff, true, tds.EncryptOff, ModeLoginOnly, OutcomeClosed},
		{"login_only/forced", true, []string{"--login-only"}, EncryptForced, true, tds.EncryptOff, ModeFull, OutcomeClosed},
		{"login_only/not_supported", true, []string{"--login-only"}, EncryptNotSupported, true, tds.EncryptOff, ModeNone, OutcomeClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: tc.server})
			args := tc.args
			if tc.cafile {
				args = append([]string{"--cafile", f.rootFile}, args...)
			}
			res := runPytds(t, f, args...)
			rec := f.waitOne(t, 1)
			if !tc.ok {
				if res.OK {
					t.Fatalf("pytds succeeded, want failure: %+v", res)
				}
				t.Logf("pytds error (expected): %s", res.Error)
				if rec.Outcome != tc.outcome || rec.LoggedIn {
					t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
				}
				return
			}
			if !res.OK {
				t.Fatalf("pytds: %s", res.Error)
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
			checkRecord(t, rec, tc.client, tc.mode)
			if rec.Outcome != tc.outcome || rec.Err != nil {
				t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
			}
			if rec.AppName != "tdstest-pytds" {
				t.Errorf("app name %q", rec.AppName)
			}
		})
	}
}

func TestPytdsWrongPassword(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptOff, Users: map[string]string{testUser: "another"}})
	res := runPytds(t, f, "--cafile", f.rootFile)
	if res.OK {
		t.Fatal("login with a wrong password succeeded")
	}
	t.Logf("pytds error (expected): %s", res.Error)
	if rec := f.waitOne(t, 1); rec.Outcome != OutcomeLoginFailed {
		t.Errorf("outcome %v (err %v), want login_failed", rec.Outcome, rec.Err)
	}
}
