package tdstest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// runTSQL runs FreeTDS tsql against the fixture with a freetds.conf whose
// [global] section holds conf, feeding it script on stdin. It returns the
// combined output and whether tsql reported success.
func runTSQL(t *testing.T, f *fixture, tsql, conf, script string) (string, error) {
	t.Helper()
	return runTSQLVersion(t, f, tsql, "7.4", conf, script)
}

// runTSQLVersion is runTSQL speaking TDS version ver.
func runTSQLVersion(t *testing.T, f *fixture, tsql, ver, conf, script string) (string, error) {
	t.Helper()
	confFile := filepath.Join(f.dir, "freetds.conf")
	body := "[global]\n\ttds version = " + ver + "\n" + conf
	if err := os.WriteFile(confFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, tsql, "-H", "127.0.0.1", "-p", strconv.Itoa(f.srv.Port()), "-U", testUser, "-P", testPassword)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "FREETDSCONF="+confFile, "TDSVER="+ver, "HOME="+f.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestFreeTDSEncryptionMatrix drives FreeTDS tsql with its three encryption
// settings against each server setting.
func TestFreeTDSEncryptionMatrix(t *testing.T) {
	tsql := lookPath(t, "tsql", "freetds-bin")
	const (
		confDefault = ""
		confRequire = "\tencryption = require\n" // plus "ca file", added below
		confOff     = "\tencryption = off\n"
	)
	tests := []struct {
		name    string
		conf    string
		server  Encryption
		ok      bool
		client  tds.Encryption
		mode    Mode
		outcome Outcome
	}{
		{"default/off", confDefault, EncryptOff, true, tds.EncryptOff, ModeLoginOnly, OutcomeClosed},
		{"default/forced", confDefault, EncryptForced, true, tds.EncryptOff, ModeFull, OutcomeClosed},
		{"default/not_supported", confDefault, EncryptNotSupported, true, tds.EncryptOff, ModeNone, OutcomeClosed},
		{"default/strict", confDefault, EncryptStrict, false, 0, ModeUnset, OutcomeRefused},
		{"require/off", confRequire, EncryptOff, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		{"require/forced", confRequire, EncryptForced, true, tds.EncryptOn, ModeFull, OutcomeClosed},
		{"require/not_supported", confRequire, EncryptNotSupported, false, tds.EncryptOn, ModeNone, OutcomeAborted},
		{"off/off", confOff, EncryptOff, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
		{"off/forced", confOff, EncryptForced, false, tds.EncryptNotSup, ModeUnset, OutcomeRefused},
		{"off/not_supported", confOff, EncryptNotSupported, true, tds.EncryptNotSup, ModeNone, OutcomeClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: tc.server})
			conf := tc.conf
			if conf != confOff {
				conf += "\tca file = " + f.rootFile + "\n"
			}
			out, err := runTSQL(t, f, tsql, conf, "SELECT 1\ngo\nSELECT * FROM tdstest.nrows(2, 12)\ngo\nexit\n")
			rec := f.waitOne(t, 1)
			if !tc.ok {
				if strings.Contains(out, "(1 row affected)") {
					t.Fatalf("tsql succeeded, want failure:\n%s", out)
				}
				if rec.Outcome != tc.outcome || rec.LoggedIn {
					t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
				}
				if rec.ClientPrelogin && rec.ClientEncryption != tc.client {
					t.Errorf("client sent %v, want %v", rec.ClientEncryption, tc.client)
				}
				return
			}
			if err != nil || !strings.Contains(out, "\n1\n") || !strings.Contains(out, "abcdef") || !strings.Contains(out, "bcdefg") {
				t.Fatalf("tsql: %v\n%s", err, out)
			}
			checkRecord(t, rec, tc.client, tc.mode)
			if rec.Outcome != tc.outcome || rec.Err != nil {
				t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.outcome)
			}
			if got := rec.Batches(); len(got) < 2 || got[len(got)-2] != "SELECT 1\n" {
				t.Errorf("batches %q", got)
			}
		})
	}
}

// TestFreeTDSUntrustedCertificate: FreeTDS given another CA refuses the
// server certificate, and the double records a failed TLS handshake.
func TestFreeTDSUntrustedCertificate(t *testing.T) {
	tsql := lookPath(t, "tsql", "freetds-bin")
	f := newFixture(t, Config{Encryption: EncryptForced})
	_, otherRoot, err := NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(f.dir, "other.pem")
	if err := os.WriteFile(other, otherRoot, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := runTSQL(t, f, tsql, "\tencryption = require\n\tca file = "+other+"\n", "SELECT 1\ngo\nexit\n")
	if strings.Contains(out, "(1 row affected)") {
		t.Fatalf("tsql trusted a certificate from an unknown CA:\n%s", out)
	}
	rec := f.waitOne(t, 1)
	if rec.Outcome != OutcomeTLSFailed || rec.LoginInTLS || rec.User != "" {
		t.Errorf("record: outcome %v err %v login in TLS %t user %q", rec.Outcome, rec.Err, rec.LoginInTLS, rec.User)
	}
}

// TestFreeTDSVersions: FreeTDS speaking TDS 7.1 to 7.4 (7.1 has narrower
// DONE, COLMETADATA and INFO fields and no ALL_HEADERS) through full TLS.
func TestFreeTDSVersions(t *testing.T) {
	tsql := lookPath(t, "tsql", "freetds-bin")
	for _, tc := range []struct {
		ver  string
		want tds.TDSVersion
	}{{"7.1", tds.TDS71A}, {"7.2", tds.TDS72}, {"7.3", tds.TDS73B}, {"7.4", tds.TDS74}} {
		t.Run(tc.ver, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: EncryptForced})
			out, err := runTSQLVersion(t, f, tsql, tc.ver, "\tca file = "+f.rootFile+"\n",
				"SELECT 1\ngo\nSELECT * FROM tdstest.nrows(2, 12)\ngo\nSELECT @@VERSION\ngo\nexit\n")
			if err != nil || !strings.Contains(out, "\n1\n") || !strings.Contains(out, "bcdefg") || !strings.Contains(out, DefaultVersion) {
				t.Fatalf("tsql: %v\n%s", err, out)
			}
			rec := f.waitOne(t, 1)
			if rec.TDSVersion != tc.want || rec.Mode != ModeFull || rec.Outcome != OutcomeClosed {
				t.Errorf("TDS %v mode %v outcome %v (%v)", rec.TDSVersion, rec.Mode, rec.Outcome, rec.Err)
			}
		})
	}
}
