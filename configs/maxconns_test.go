package configs

import (
	"errors"
	"testing"
)

// TestSQLMaxConnections: sql[].max_connections defaults to 1000, takes the
// configured value, and refuses negative or absurd values naming the key.
func TestSQLMaxConnections(t *testing.T) {
	listener := func(extra string) string {
		return minimalSite + `
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    upstream:
      address: 127.0.0.1:1433
` + extra
	}
	cfg, err := Load(Options{File: writeConfig(t, listener(""))})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SQL[0].MaxConnections; got != DefaultSQLMaxConnections {
		t.Errorf("default max_connections %d, want %d", got, DefaultSQLMaxConnections)
	}
	cfg, err = Load(Options{File: writeConfig(t, listener("    max_connections: 50\n"))})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SQL[0].MaxConns(); got != 50 {
		t.Errorf("max_connections 50 read as %d", got)
	}
	if got := (SQLListener{}).MaxConns(); got != DefaultSQLMaxConnections {
		t.Errorf("MaxConns of a zero listener %d, want the default", got)
	}
	for _, bad := range []string{"-1", "2000000"} {
		_, err := Load(Options{File: writeConfig(t, listener("    max_connections: "+bad+"\n"))})
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Key != "sql[0].max_connections" {
			t.Errorf("max_connections %s: %v, want one problem naming sql[0].max_connections", bad, err)
		}
	}
}
