package tdstest

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// mssqlDSN returns a go-mssqldb DSN for the fixture. encrypt "" leaves the
// parameter out; with any encrypt value but "disable" the client verifies the
// server against the fixture's root with hostNameInCertificate=localhost.
func (f *fixture) mssqlDSN(encrypt, password string, extra map[string]string) string {
	q := url.Values{}
	q.Set("database", "master")
	q.Set("app name", "tdstest-go")
	if encrypt != "" {
		q.Set("encrypt", encrypt)
	}
	if encrypt != "" && encrypt != "disable" {
		q.Set("certificate", f.rootFile)
		q.Set("hostNameInCertificate", testHost)
	}
	for k, v := range extra {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(testUser, password), Host: f.srv.Addr(), RawQuery: q.Encode()}
	return u.String()
}

// openMSSQL returns a database/sql pool and one pinned connection.
func openMSSQL(t *testing.T, ctx context.Context, dsn string) (*sql.DB, *sql.Conn, error) {
	t.Helper()
	connector, err := mssql.NewConnector(dsn)
	if err != nil {
		t.Fatalf("connector: %v", err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	conn, err := db.Conn(ctx)
	return db, conn, err
}

// TestGoMSSQLEncryptionMatrix drives go-mssqldb with each encrypt setting
// against each server setting and checks what the double saw.
func TestGoMSSQLEncryptionMatrix(t *testing.T) {
	type want struct {
		ok      bool
		client  tds.Encryption // PRELOGIN ENCRYPTION sent (inside TLS for strict)
		mode    Mode
		outcome Outcome
	}
	tests := []struct {
		encrypt string
		server  Encryption
		want    want
	}{
		{"disable", EncryptOff, want{true, tds.EncryptNotSup, ModeNone, OutcomeClosed}},
		{"disable", EncryptNotSupported, want{true, tds.EncryptNotSup, ModeNone, OutcomeClosed}},
		{"disable", EncryptForced, want{false, tds.EncryptNotSup, ModeUnset, OutcomeRefused}},
		{"disable", EncryptStrict, want{false, 0, ModeUnset, OutcomeRefused}},
		{"false", EncryptOff, want{true, tds.EncryptOff, ModeLoginOnly, OutcomeClosed}},
		{"false", EncryptForced, want{true, tds.EncryptOff, ModeFull, OutcomeClosed}},
		{"false", EncryptNotSupported, want{true, tds.EncryptOff, ModeNone, OutcomeClosed}},
		{"true", EncryptOff, want{true, tds.EncryptOn, ModeFull, OutcomeClosed}},
		{"true", EncryptForced, want{true, tds.EncryptOn, ModeFull, OutcomeClosed}},
		{"true", EncryptNotSupported, want{false, tds.EncryptOn, ModeNone, OutcomeAborted}},
		{"strict", EncryptOff, want{true, 4, ModeStrict, OutcomeClosed}},
		{"strict", EncryptForced, want{true, 4, ModeStrict, OutcomeClosed}},
		{"strict", EncryptStrict, want{true, 4, ModeStrict, OutcomeClosed}},
		{"strict", EncryptNotSupported, want{false, 0, ModeUnset, OutcomeRefused}},
	}
	for _, tc := range tests {
		t.Run(tc.encrypt+"/"+tc.server.String(), func(t *testing.T) {
			f := newFixture(t, Config{Encryption: tc.server})
			ctx := testContext(t)
			dsn := f.mssqlDSN(tc.encrypt, testPassword, nil)
			if !tc.want.ok {
				connector, err := mssql.NewConnector(dsn)
				if err != nil {
					t.Fatal(err)
				}
				c, err := connector.Connect(ctx)
				if err == nil {
					_ = c.Close()
					t.Fatal("connection succeeded, want failure")
				}
				t.Logf("client error (expected): %v", err)
				rec := f.waitOne(t, 1)
				if rec.Outcome != tc.want.outcome || rec.LoggedIn {
					t.Errorf("outcome %v (err %v, logged in %t), want %v", rec.Outcome, rec.Err, rec.LoggedIn, tc.want.outcome)
				}
				if rec.ClientPrelogin && rec.ClientEncryption != tc.want.client {
					t.Errorf("client sent %v, want %v", rec.ClientEncryption, tc.want.client)
				}
				return
			}

			db, conn, err := openMSSQL(t, ctx, dsn)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			runBasicQueries(t, ctx, conn)
			_ = conn.Close()
			_ = db.Close()

			rec := f.waitOne(t, 1)
			checkRecord(t, rec, tc.want.client, tc.want.mode)
			if rec.Outcome != tc.want.outcome || rec.Err != nil {
				t.Errorf("outcome %v (err %v), want %v", rec.Outcome, rec.Err, tc.want.outcome)
			}
			if rec.AppName != "tdstest-go" || rec.Library != "go-mssqldb" {
				t.Errorf("app %q library %q", rec.AppName, rec.Library)
			}
			if tc.want.mode == ModeStrict && (rec.ALPN != alpnTDS8 || rec.TLSVersion != tls.VersionTLS13) {
				t.Errorf("strict: ALPN %q TLS %x, want tds/8.0 over TLS 1.3", rec.ALPN, rec.TLSVersion)
			}
			wantBatches := []string{"SELECT 1", "SELECT @@VERSION", "SELECT * FROM tdstest.rows(3, 10)", "SELECT * FROM tdstest.nrows(2, 8)"}
			if got := rec.Batches(); !equalStrings(got, wantBatches) {
				t.Errorf("batches %q, want %q", got, wantBatches)
			}
		})
	}
}

// checkRecord checks the encryption facts of a successful session.
func checkRecord(t *testing.T, rec SessionRecord, client tds.Encryption, mode Mode) {
	t.Helper()
	if !rec.LoggedIn || rec.User != testUser {
		t.Errorf("logged in %t as %q, want %q", rec.LoggedIn, rec.User, testUser)
	}
	if rec.ClientEncryption != client {
		t.Errorf("client sent ENCRYPTION %v, want %v", rec.ClientEncryption, client)
	}
	if rec.Mode != mode {
		t.Errorf("mode %v, want %v", rec.Mode, mode)
	}
	wantTLS := mode != ModeNone
	if rec.LoginInTLS != wantTLS || (rec.TLSVersion != 0) != wantTLS {
		t.Errorf("login in TLS %t, TLS version %x; want TLS %t", rec.LoginInTLS, rec.TLSVersion, wantTLS)
	}
	if (mode == ModeFull || mode == ModeLoginOnly) && rec.TLSVersion != tls.VersionTLS12 {
		t.Errorf("TDS 7.x TLS version %x, want TLS 1.2", rec.TLSVersion)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// runBasicQueries runs SELECT 1, @@VERSION and two small rowsets.
func runBasicQueries(t *testing.T, ctx context.Context, conn *sql.Conn) {
	t.Helper()
	var one int
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT @@VERSION").Scan(&version); err != nil || version != DefaultVersion {
		t.Fatalf("SELECT @@VERSION: %q, %v", version, err)
	}
	checkRows(t, ctx, conn, false, 3, 10)
	checkRows(t, ctx, conn, true, 2, 8)
}

// checkRows reads tdstest.rows or nrows and checks every value.
func checkRows(t *testing.T, ctx context.Context, conn *sql.Conn, text bool, n int64, m int) {
	t.Helper()
	fn := "rows"
	if text {
		fn = "nrows"
	}
	q := "SELECT * FROM tdstest." + fn + "(" + strconv.FormatInt(n, 10) + ", " + strconv.Itoa(m) + ")"
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var r int64
	for rows.Next() {
		var got []byte
		if err := rows.Scan(&got); err != nil {
			t.Fatalf("%s row %d: %v", q, r, err)
		}
		want := expectedValue(text, r, m)
		if text {
			want = []byte(asciiOf(want))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s row %d: %d bytes %.20q..., want %d bytes %.20q...", q, r, len(got), got, len(want), want)
		}
		r++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if r != n {
		t.Fatalf("%s: %d rows, want %d", q, r, n)
	}
}

// asciiOf turns UTF-16LE ASCII into a string.
func asciiOf(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); i += 2 {
		sb.WriteByte(b[i])
	}
	return sb.String()
}

func TestGoMSSQLWrongPassword(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptForced})
	ctx := testContext(t)
	connector, err := mssql.NewConnector(f.mssqlDSN("true", "wrong", nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = connector.Connect(ctx)
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 18456 || me.Class != 14 || me.State != 1 {
		t.Fatalf("error %v, want mssql.Error 18456 class 14 state 1", err)
	}
	// go-mssqldb prefixes "login error: " to the server's message.
	if want := "Login failed for user '" + testUser + "'."; !strings.HasSuffix(me.Message, want) || me.ServerName != DefaultServerName {
		t.Errorf("message %q from %q, want %q from %q", me.Message, me.ServerName, want, DefaultServerName)
	}
	rec := f.waitOne(t, 1)
	if rec.Outcome != OutcomeLoginFailed || rec.LoggedIn || !rec.LoginInTLS {
		t.Errorf("record %+v", rec)
	}
}

func TestGoMSSQLUnknownBatch(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptForced})
	ctx := testContext(t)
	_, conn, err := openMSSQL(t, ctx, f.mssqlDSN("true", testPassword, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, "DROP TABLE customers")
	var me mssql.Error
	if !errors.As(err, &me) || me.Number != 156 {
		t.Fatalf("error %v, want mssql.Error 156", err)
	}
	// The session goes on.
	var one int
	if err := conn.QueryRowContext(ctx, "select 1;").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 after error: %d, %v", one, err)
	}
	// With parameters go-mssqldb sends sp_executesql (RPC).
	var v int
	if err := conn.QueryRowContext(ctx, "SELECT 42", sql.Named("unused", 1)).Scan(&v); err != nil || v != 42 {
		t.Fatalf("sp_executesql SELECT 42: %d, %v", v, err)
	}
	_ = conn.Close()
	recs := f.srv.Sessions()
	if len(recs) == 0 || len(recs[0].Requests) < 3 || recs[0].Requests[2].Proc != "sp_executesql" {
		t.Fatalf("requests %+v, want an sp_executesql RPC third", recs)
	}
}

// TestGoMSSQLCancel cancels a WAITFOR and a large rowset with go-mssqldb
// and checks that the connection stays usable (attention answered with
// DONE_ATTN).
func TestGoMSSQLCancel(t *testing.T) {
	for _, encrypt := range []string{"true", "false"} {
		t.Run("encrypt="+encrypt, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: EncryptOff})
			ctx := testContext(t)
			_, conn, err := openMSSQL(t, ctx, f.mssqlDSN(encrypt, testPassword, nil))
			if err != nil {
				t.Fatal(err)
			}

			// WAITFOR: cancel once the server has the request.
			qctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() {
				_, err := conn.ExecContext(qctx, "WAITFOR DELAY '00:10:00'")
				errc <- err
			}()
			if _, err := f.srv.Wait(ctx, hasRequest("WAITFOR")); err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := <-errc; err == nil {
				t.Fatal("WAITFOR returned without error after cancel")
			}
			var one int
			if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 after canceled WAITFOR: %d, %v", one, err)
			}

			// A 4 GiB rowset: read one row, cancel, drain.
			qctx, cancel = context.WithCancel(ctx)
			rows, err := conn.QueryContext(qctx, "SELECT * FROM tdstest.rows(1048576, 4096)")
			if err != nil {
				t.Fatal(err)
			}
			if !rows.Next() {
				t.Fatalf("no first row: %v", rows.Err())
			}
			cancel()
			for rows.Next() {
			}
			_ = rows.Close()
			if err := conn.QueryRowContext(ctx, "SELECT 2").Scan(&one); err != nil || one != 2 {
				t.Fatalf("SELECT 2 after canceled rowset: %d, %v", one, err)
			}
			_ = conn.Close()

			recs := f.srv.Sessions()
			if len(recs) != 1 {
				t.Fatalf("%d sessions, want 1 (the connection must survive the cancels)", len(recs))
			}
			rec := recs[0]
			// go-mssqldb may send a second attention while draining a
			// canceled rowset; each one is acknowledged.
			if rec.Attentions < 2 {
				t.Errorf("attentions %d, want 2 or more", rec.Attentions)
			}
			var canceled []string
			for _, q := range rec.Requests {
				if q.Canceled {
					canceled = append(canceled, q.Text)
				}
			}
			if len(canceled) != 2 {
				t.Errorf("canceled requests %q, want the WAITFOR and the rowset", canceled)
			}
		})
	}
}

// hasRequest is a Wait condition: some session received a request whose
// text contains s.
func hasRequest(s string) func([]SessionRecord) bool {
	return func(recs []SessionRecord) bool {
		for _, r := range recs {
			for _, q := range r.Requests {
				if strings.Contains(q.Text, s) {
					return true
				}
			}
		}
		return false
	}
}

func TestGoMSSQLPacketSize32767(t *testing.T) {
	for _, encrypt := range []string{"true", "disable", "strict"} {
		t.Run("encrypt="+encrypt, func(t *testing.T) {
			f := newFixture(t, Config{Encryption: EncryptOff})
			ctx := testContext(t)
			db, conn, err := openMSSQL(t, ctx, f.mssqlDSN(encrypt, testPassword, map[string]string{"packet size": "32767"}))
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, ctx, conn, false, 20, 100000) // PLP values across many packets
			checkRows(t, ctx, conn, true, 20, 7000)
			checkRows(t, ctx, conn, false, 2000, 10)
			_ = conn.Close()
			_ = db.Close()
			rec := f.waitOne(t, 1)
			if rec.RequestedPacketSize != 32767 || rec.PacketSize != 32767 {
				t.Errorf("packet size requested %d granted %d, want 32767", rec.RequestedPacketSize, rec.PacketSize)
			}
		})
	}
}

// TestGoMSSQL256MiB streams a 256 MiB rowset through full TLS.
func TestGoMSSQL256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB rowset skipped in -short mode")
	}
	f := newFixture(t, Config{Encryption: EncryptForced})
	ctx := testContext(t)
	_, conn, err := openMSSQL(t, ctx, f.mssqlDSN("true", testPassword, map[string]string{"packet size": "32767"}))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT * FROM tdstest.rows(4096, 65536)")
	if err != nil {
		t.Fatal(err)
	}
	var r int64
	var total int
	var got []byte
	for rows.Next() {
		if err := rows.Scan(&got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 65536 || got[0] != byte(r%251) || got[65535] != byte((r+65535)%251) {
			t.Fatalf("row %d: %d bytes, first %d last %d", r, len(got), got[0], got[len(got)-1])
		}
		total += len(got)
		r++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if total != 256<<20 {
		t.Fatalf("%d bytes, want 256 MiB", total)
	}
}

// TestGoMSSQLTransaction: go-mssqldb's BeginTx, Commit and Rollback use
// transaction manager requests, which the double acknowledges.
func TestGoMSSQLTransaction(t *testing.T) {
	f := newFixture(t, Config{Encryption: EncryptForced})
	ctx := testContext(t)
	db, _, err := openMSSQL(t, ctx, f.mssqlDSN("true", testPassword, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, commit := range []bool{true, false} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 in transaction: %d, %v", one, err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatalf("commit %t: %v", commit, err)
		}
	}
	var tm int
	for _, rec := range f.srv.Sessions() {
		for _, q := range rec.Requests {
			if q.Type == tds.PacketTransMgr {
				tm++
			}
		}
	}
	if tm != 4 {
		t.Errorf("%d transaction manager requests, want 4", tm)
	}
}
