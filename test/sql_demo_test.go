package test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gateway-project/gateway/sqltunnel/tdstest"
)

// TestDemoSQL runs `gateway demo` and logs in to its SQL leg as the demo
// tells a go-mssqldb user to: encrypt=true, certificate=root_ca and
// hostNameInCertificate=sql_hostname, from demo.json alone.
func TestDemoSQL(t *testing.T) {
	t.Parallel()
	p, info := startDemo(t)
	if info.SQLAddr == "" || info.SQLHostname == "" || info.SQLUser == "" || info.SQLPassword == "" || info.RootCA == "" {
		t.Fatalf("demo.json lacks SQL fields: %+v", info)
	}
	// Printed on standard output by design; never in the logs.
	registerSecret(info.SQLPassword) // log hygiene: proof_secrets_test.go
	if info.BackendSQLAddr == info.SQLAddr {
		t.Errorf("demo.json: sql_addr is the backend's own address %s", info.SQLAddr)
	}

	db := openMSSQL(t, mssqlDSNFor(info.SQLAddr, info.SQLUser, info.SQLPassword,
		map[string]string{"encrypt": "true", "certificate": info.RootCA, "hostNameInCertificate": info.SQLHostname}))
	var version string
	if err := db.QueryRowContext(sqlCtx(t), "SELECT @@VERSION").Scan(&version); err != nil {
		t.Fatalf("SELECT @@VERSION through the demo's SQL leg: %v", err)
	}
	if version != tdstest.DefaultVersion {
		t.Errorf("SELECT @@VERSION = %q, want the demo double's %q", version, tdstest.DefaultVersion)
	}
	_ = db.Close()
	if !strings.Contains(p.stdout.String(), info.SQLAddr) {
		t.Errorf("the demo does not print its SQL address %s:\n%s", info.SQLAddr, p.stdout.String())
	}

	p.signal(t, syscall.SIGINT)
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gateway demo exited %d after SIGINT, want 0", code)
	}
}
