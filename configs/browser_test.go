package configs

import (
	"errors"
	"strings"
	"testing"
)

// TestSQLBrowserValidation: sql[].instance follows SQL Server's naming
// rules and is unique regardless of case; sql_browser.listen is a UDP
// host:port and needs an instance to announce.
func TestSQLBrowserValidation(t *testing.T) {
	second := func(c *Config) {
		c.SQL = append(c.SQL, c.SQL[0])
		c.SQL[1].Name, c.SQL[1].Listen = "reports", ":1533"
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string // "" means valid
		message string
	}{
		{"instance", func(c *Config) { c.SQL[0].Instance = "SQLEXPRESS" }, "", ""},
		{"instance with browser", func(c *Config) { c.SQL[0].Instance = "SQLEXPRESS"; c.SQLBrowser.Listen = ":1434" }, "", ""},
		{"instance symbols", func(c *Config) { c.SQL[0].Instance = "_crm$2#" }, "", ""},
		{"instance 16", func(c *Config) { c.SQL[0].Instance = strings.Repeat("A", 16) }, "", ""},
		{"instance without browser", func(c *Config) { c.SQL[0].Instance = "CRM" }, "", ""},
		{"instance 17", func(c *Config) { c.SQL[0].Instance = strings.Repeat("A", 17) }, "sql[0].instance", "1-16 characters"},
		{"instance digit first", func(c *Config) { c.SQL[0].Instance = "2CRM" }, "sql[0].instance", "starting with a letter"},
		{"instance dash", func(c *Config) { c.SQL[0].Instance = "my-db" }, "sql[0].instance", "e.g. SQLEXPRESS"},
		{"instance backslash", func(c *Config) { c.SQL[0].Instance = `DB01\SQLEXPRESS` }, "sql[0].instance", "letters, digits"},
		{"instance reserved", func(c *Config) { c.SQL[0].Instance = "mssqlserver" }, "sql[0].instance", "default instance"},
		{"instance default", func(c *Config) { c.SQL[0].Instance = "Default" }, "sql[0].instance", "default instance"},
		{"instance duplicate", func(c *Config) {
			second(c)
			c.SQL[0].Instance, c.SQL[1].Instance = "SQLEXPRESS", "SqlExpress"
		}, "sql[1].instance", "also the instance of sql[0]"},
		{"two instances", func(c *Config) {
			second(c)
			c.SQL[0].Instance, c.SQL[1].Instance = "CRM", "REPORTS"
			c.SQLBrowser.Listen = "10.0.0.5:1434"
		}, "", ""},
		{"browser listen", func(c *Config) { c.SQL[0].Instance = "A"; c.SQLBrowser.Listen = "1434" }, "sql_browser.listen", "host:port"},
		{"browser port", func(c *Config) { c.SQL[0].Instance = "A"; c.SQLBrowser.Listen = ":70000" }, "sql_browser.listen", "port must be"},
		{"browser without instance", func(c *Config) { c.SQLBrowser.Listen = ":1434" }, "sql_browser.listen", "sql[N].instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validBase()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want valid", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Key == tc.key {
					if !strings.Contains(p.Message, tc.message) {
						t.Errorf("%s: message %q lacks %q", tc.key, p.Message, tc.message)
					}
					return
				}
			}
			t.Fatalf("no problem keyed %s in %v", tc.key, ve.Problems)
		})
	}
}

func TestSQLBrowserLoad(t *testing.T) {
	// Defaults: off, and no instance.
	cfg, err := Load(Options{File: writeConfig(t, minimalSite+`
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    upstream:
      address: db.internal:1433
`)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SQLBrowser.Listen != "" || cfg.SQL[0].Instance != "" {
		t.Fatalf("defaults: sql_browser.listen %q, sql[0].instance %q; want both empty", cfg.SQLBrowser.Listen, cfg.SQL[0].Instance)
	}

	cfg, err = Load(Options{File: writeConfig(t, minimalSite+`
sql_browser:
  listen: ":1434"
sql:
  - name: crm
    listen: 127.0.0.1:0
    hostname: sql.test
    instance: SQLEXPRESS
    upstream:
      address: db.internal:1433
  - name: reports
    listen: 127.0.0.1:0
    hostname: sql.test
    upstream:
      address: db.internal:1533
`)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SQLBrowser.Listen != ":1434" || cfg.SQL[0].Instance != "SQLEXPRESS" || cfg.SQL[1].Instance != "" {
		t.Fatalf("sql_browser.listen %q, instances %q %q", cfg.SQLBrowser.Listen, cfg.SQL[0].Instance, cfg.SQL[1].Instance)
	}

	// The environment sets the listen address like any other key; with no
	// instance configured that is a problem naming the key.
	t.Setenv("GATEWAY_SQL_BROWSER_LISTEN", "127.0.0.1:1434")
	_, err = Load(Options{File: writeConfig(t, minimalSite)})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Key != "sql_browser.listen" {
		t.Fatalf("Load with GATEWAY_SQL_BROWSER_LISTEN and no instance = %v, want one problem keyed sql_browser.listen", err)
	}

	// A misspelt key is refused.
	t.Setenv("GATEWAY_SQL_BROWSER_LISTEN", "")
	_, err = Load(Options{File: writeConfig(t, minimalSite+"sql_browser:\n  listn: \":1434\"\n")})
	if !errors.As(err, &ve) || !strings.Contains(ve.Problems[0].Key, "sql_browser.listn") {
		t.Fatalf("misspelt key: %v", err)
	}
}

// TestSQLBrowserReload: the browser address and instance names change on
// a reload.
func TestSQLBrowserReload(t *testing.T) {
	running, err := Defaults()
	if err != nil {
		t.Fatal(err)
	}
	running.SQL = []SQLListener{{Name: "crm", Instance: "A"}}
	next := running
	next.SQLBrowser.Listen = ":1434"
	next.SQL = []SQLListener{{Name: "crm", Instance: "B"}}
	if err := CheckReload(&running, &next); err != nil {
		t.Fatalf("CheckReload = %v, want the reload allowed", err)
	}
}
