package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/gateway-project/gateway/sqltunnel/tdstest/clients"
)

// How the tests start each independent client: go-mssqldb in process,
// FreeTDS tsql here, tedious and pytds through sqltunnel/tdstest/clients,
// which the double's own tests use too.

// Statements every client runs, searched for on the wire by the tap tests.
const (
	// sqlMarkerQuery is a statement the double answers (any INT literal)
	// and no TLS record will contain by chance.
	sqlMarkerQuery = "SELECT 739104628"
	sqlMarkerValue = 739104628
	// sqlTextQuery returns two NVARCHAR rows: "abcd…zabcdef" and "bcde…".
	sqlTextQuery = "SELECT * FROM tdstest.nrows(2, 64)"
)

// --- go-mssqldb -------------------------------------------------------------

// mssqlDSN is a go-mssqldb URL for addr (host:port) with the test login and
// params (keys as go-mssqldb spells them; "" values are left out).
func mssqlDSN(addr string, params map[string]string) string {
	return mssqlDSNFor(addr, sqlUser, sqlPassword, params)
}

// mssqlDSNFor is mssqlDSN for another login.
func mssqlDSNFor(addr, user, password string, params map[string]string) string {
	q := url.Values{}
	q.Set("database", "master")
	q.Set("app name", "e2e-go-mssqldb")
	q.Set("dial timeout", "30")
	for k, v := range params {
		if v != "" {
			q.Set(k, v)
		}
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(user, password), Host: addr, RawQuery: q.Encode()}
	return u.String()
}

// verifiedParams makes go-mssqldb verify the gateway's certificate against
// the exported internal root, for the name sqlHost.
func verifiedParams(encrypt, rootFile string) map[string]string {
	return map[string]string{"encrypt": encrypt, "certificate": rootFile, "hostNameInCertificate": sqlHost}
}

// openMSSQL returns a pool for dsn, closed when the test ends.
func openMSSQL(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	connector, err := mssql.NewConnector(dsn)
	if err != nil {
		t.Fatalf("go-mssqldb connector: %v", err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openMSSQLWithTLS is openMSSQL with tlsConfig put into the parsed DSN: the
// only way to give go-mssqldb a TLS configuration with encrypt=disable,
// where it ignores certificate= and hostNameInCertificate=.
func openMSSQLWithTLS(t *testing.T, dsn string, tlsConfig *tls.Config) *sql.DB {
	t.Helper()
	cfg, err := msdsn.Parse(dsn)
	if err != nil {
		t.Fatalf("go-mssqldb DSN: %v", err)
	}
	cfg.TLSConfig = tlsConfig
	db := sql.OpenDB(mssql.NewConnectorConfig(cfg))
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// mssqlQueries runs the marker query, SELECT @@VERSION and the text rowset
// on one connection, checks the answers and closes the connection.
func mssqlQueries(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	var n int64
	if err := conn.QueryRowContext(ctx, sqlMarkerQuery).Scan(&n); err != nil {
		return fmt.Errorf("%s: %w", sqlMarkerQuery, err)
	}
	if n != sqlMarkerValue {
		return fmt.Errorf("%s returned %d", sqlMarkerQuery, n)
	}
	var version string
	if err := conn.QueryRowContext(ctx, "SELECT @@VERSION").Scan(&version); err != nil {
		return fmt.Errorf("SELECT @@VERSION: %w", err)
	}
	if !strings.Contains(version, "tdstest") {
		return fmt.Errorf("SELECT @@VERSION returned %q", version)
	}
	rows, err := conn.QueryContext(ctx, sqlTextQuery)
	if err != nil {
		return fmt.Errorf("%s: %w", sqlTextQuery, err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", sqlTextQuery, err)
	}
	if len(got) != 2 || got[0] != textRow(0, 32) || got[1] != textRow(1, 32) {
		return fmt.Errorf("%s returned %q", sqlTextQuery, got)
	}
	return nil
}

// textRow is row r of tdstest.nrows(_, 2*n): n letters from 'a'+r.
func textRow(r, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + (r+i)%26)
	}
	return string(b)
}

// mssqlError returns the TDS ERROR behind err, failing the test if there is
// none.
func mssqlError(t *testing.T, err error) mssql.Error {
	t.Helper()
	var me mssql.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) carries no TDS ERROR", err, err)
	}
	return me
}

// --- FreeTDS tsql -----------------------------------------------------------

// runTSQL runs FreeTDS tsql (TDS 7.4) against sqlHost:port with a
// freetds.conf whose [global] section adds conf, feeding script on standard
// input. It returns the combined output and tsql's exit error.
func runTSQL(t *testing.T, port int, conf, script string) (string, error) {
	t.Helper()
	return runTSQLAs(t, port, sqlUser, sqlPassword, conf, script)
}

// runTSQLAs is runTSQL logging in as user (DOMAIN\user: NTLM) with password.
func runTSQLAs(t *testing.T, port int, user, password, conf, script string) (string, error) {
	t.Helper()
	tsql := needTSQL(t)
	dir := t.TempDir()
	confFile := writeFile(t, dir, "freetds.conf", []byte("[global]\n\ttds version = 7.4\n"+conf))
	ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tsql, "-H", sqlHost, "-p", strconv.Itoa(port), "-U", user, "-P", password)
	cmd.Stdin = strings.NewReader(script)
	// HOME keeps a developer's ~/.freetds.conf out; TDSVER stops tsql from
	// retrying as TDS 5.0.
	cmd.Env = append(os.Environ(), "FREETDSCONF="+confFile, "TDSVER=7.4", "HOME="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// needTSQL returns the path of tsql, or skips (fails under CI).
func needTSQL(t *testing.T) string {
	t.Helper()
	tsql, err := exec.LookPath("tsql")
	requireClient(t, err, "the Debian package freetds-bin")
	return tsql
}

// tsqlScript runs the marker and text queries.
const tsqlScript = sqlMarkerQuery + "\ngo\n" + sqlTextQuery + "\ngo\nexit\n"

// tsqlOK reports whether tsql's output shows both answers of tsqlScript.
func tsqlOK(out string) bool {
	return strings.Contains(out, strconv.Itoa(sqlMarkerValue)) && strings.Contains(out, textRow(1, 32))
}

// --- tedious ----------------------------------------------------------------

// runTedious runs tedious 19 against sqlHost:port with encrypt (true, false
// or "strict"), trusting caFile only (trustServerCertificate false).
func runTedious(t *testing.T, port int, encrypt any, caFile string) clients.Result {
	t.Helper()
	needTedious(t)
	ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
	defer cancel()
	res, err := clients.Tedious{Host: sqlHost, Port: port, User: sqlUser, Password: sqlPassword, Encrypt: encrypt, CAFile: caFile}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// needTedious skips (fails under CI) unless node and tedious are installed.
func needTedious(t *testing.T) {
	t.Helper()
	_, _, err := clients.TediousSetup()
	requireClient(t, err)
}

// checkTedious checks the answers of a successful tedious run.
func checkTedious(t *testing.T, res clients.Result) {
	t.Helper()
	if !res.OK {
		t.Fatalf("tedious: %s %s", res.Code, res.Error)
	}
	r := res.Results
	if r.Select1 != 1 || !strings.Contains(r.Version, "tdstest") || len(r.Rows) != 3 || len(r.NRows) != 2 ||
		r.NRows[0] != "abcde:5000" || r.NRows[1] != "bcdef:5000" {
		t.Errorf("tedious results %+v", r)
	}
}

// --- pytds ------------------------------------------------------------------

// runPytds runs pytds against sqlHost:port; with caFile it asks for
// encryption (ON) and verifies the certificate and host name, without it it
// sends NOT_SUP.
func runPytds(t *testing.T, port int, caFile string) clients.Result {
	t.Helper()
	needPytds(t)
	ctx, cancel := context.WithTimeout(sqlCtx(t), 90*time.Second)
	defer cancel()
	res, err := clients.Pytds{Host: sqlHost, Port: port, User: sqlUser, Password: sqlPassword, CAFile: caFile}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// needPytds skips (fails under CI) unless Debian's python has pytds and
// pyOpenSSL.
func needPytds(t *testing.T) {
	t.Helper()
	requireClient(t, clients.PytdsSetup())
}

// checkPytds checks the answers of a successful pytds run.
func checkPytds(t *testing.T, res clients.Result) {
	t.Helper()
	if !res.OK {
		t.Fatalf("pytds: %s", res.Error)
	}
	r := res.Results
	if r.Select1 != 1 || !strings.Contains(r.Version, "tdstest") || len(r.Rows) != 3 || len(r.NRows) != 2 ||
		r.NRows[0] != "abcde:5000" || r.NRows[1] != "bcdef:5000" {
		t.Errorf("pytds results %+v", r)
	}
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
