package tdstest

import (
	"testing"
)

// TestCatalogViews: go-mssqldb reads sys.dm_exec_connections,
// sys.databases and the session-setup scalars as a driver and an audit
// would, with the right column types: the live sessions with their real
// encryption, the injected rows, and the databases with TDE or without.
func TestCatalogViews(t *testing.T) {
	f := newFixture(t, Config{
		Encryption:  EncryptForced,
		Instance:    "AUDIT",
		Connections: []ConnectionRow{{SessionID: 91, Encrypted: false, ClientNetAddress: "10.1.2.3"}},
		Databases:   []DatabaseRow{{Name: "ehr", Encrypted: true}, {Name: "scratch", Encrypted: false}},
	})
	ctx := testContext(t)
	_, conn, err := openMSSQL(t, ctx, f.mssqlDSN("true", testPassword, nil))
	if err != nil {
		t.Fatal(err)
	}
	type connRow struct {
		id            int
		enc, addr, as string
	}
	rows, err := conn.QueryContext(ctx, "SELECT session_id, encrypt_option, client_net_address, auth_scheme FROM sys.dm_exec_connections")
	if err != nil {
		t.Fatal(err)
	}
	var got []connRow
	for rows.Next() {
		var r connRow
		if err := rows.Scan(&r.id, &r.enc, &r.addr, &r.as); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []connRow{{firstSPID, "TRUE", "127.0.0.1", "SQL"}, {91, "FALSE", "10.1.2.3", "SQL"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("dm_exec_connections = %+v, want %+v", got, want)
	}

	var self string
	if err := conn.QueryRowContext(ctx, "SELECT client_net_address FROM sys.dm_exec_connections WHERE session_id = @@SPID").Scan(&self); err != nil || self != "127.0.0.1" {
		t.Errorf("own connection: %q, %v", self, err)
	}

	drows, err := conn.QueryContext(ctx, "SELECT name, is_encrypted FROM sys.databases")
	if err != nil {
		t.Fatal(err)
	}
	dbs := map[string]bool{}
	for drows.Next() {
		var name string
		var enc bool
		if err := drows.Scan(&name, &enc); err != nil {
			t.Fatal(err)
		}
		dbs[name] = enc
	}
	if len(dbs) != 3 || dbs["master"] || !dbs["ehr"] || dbs["scratch"] {
		t.Errorf("sys.databases = %v", dbs)
	}

	var spid, prec int
	var db, edition, instance string
	if err := conn.QueryRowContext(ctx, "SELECT @@SPID, @@MAX_PRECISION, DB_NAME(), SERVERPROPERTY('Edition'), SERVERPROPERTY('InstanceName')").
		Scan(&spid, &prec, &db, &edition, &instance); err != nil {
		t.Fatal(err)
	}
	if spid != firstSPID || prec != 38 || db != "master" || edition == "" || instance != "AUDIT" {
		t.Errorf("scalars: spid %d, max precision %d, db %q, edition %q, instance %q", spid, prec, db, edition, instance)
	}
}
