package audit

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
)

// systemDatabases cannot be encrypted by TDE (tempdb is, by SQL Server,
// once any database is) and are left out of the TDE check.
var systemDatabases = map[string]bool{"master": true, "model": true, "msdb": true, "tempdb": true}

// sqlServer asks SQL Server itself, through the audit login and the same
// verification as the gateway's upstream leg, which connections are
// encrypted and come through the gateway, and which databases are
// encrypted at rest.
func (a *auditor) sqlServer(ctx context.Context, l configs.SQLListener) {
	if l.Audit.User == "" {
		return
	}
	i := a.sqlIndex(l.Name)
	key := fmt.Sprintf("sql[%d].audit", i)
	id := "sql_server." + l.Name
	v := SQLView{Listener: l.Name, Upstream: l.Upstream.Address, Connections: []Connection{}, Databases: []Database{}}
	defer func() { a.r.SQLServer = append(a.r.SQLServer, v) }()
	getenv := a.o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	pw := getenv(l.Audit.PasswordEnv)
	if pw == "" {
		v.Error = "environment variable " + l.Audit.PasswordEnv + " is empty"
		a.r.add(Check{ID: id + ".login", Section: "sql_server", Subject: l.Upstream.Address, Title: "SQL Server's own view",
			Verdict: NotRun, Finding: "the audit login's password is not set: " + v.Error, Fix: "export " + l.Audit.PasswordEnv + " before running the audit", Key: key + ".password_env"})
		return
	}
	db, err := a.openAudit(l, pw)
	if err == nil {
		defer db.Close()
		err = a.readView(ctx, db, &v)
	}
	if err != nil {
		v.Error = err.Error()
		a.r.add(Check{ID: id + ".login", Section: "sql_server", Subject: l.Upstream.Address, Title: "SQL Server's own view",
			Verdict: Fail, Finding: "the audit login failed: " + err.Error(),
			Fix: "check " + key + ".user and its password, and grant it VIEW SERVER STATE", Key: key + ".user"})
		return
	}
	a.r.add(Check{ID: id + ".version", Section: "sql_server", Subject: l.Upstream.Address, Title: "SQL Server version", Verdict: Info, Finding: firstLine(v.Version)})

	var bad []string
	for _, c := range v.Connections {
		switch {
		case !c.Encrypted:
			bad = append(bad, fmt.Sprintf("session %d from %s is not encrypted", c.SessionID, c.Address))
		case !c.ViaGateway:
			bad = append(bad, fmt.Sprintf("session %d from %s connects around the gateway", c.SessionID, c.Address))
		}
	}
	c := Check{ID: id + ".connections", Section: "sql_server", Subject: l.Upstream.Address, Title: "Every connection SQL Server has is encrypted and comes through the gateway"}
	if len(bad) > 0 {
		c.Verdict = Fail
		c.Finding = fmt.Sprintf("%d of %d connections: %s", len(bad), len(v.Connections), strings.Join(bad, "; "))
		c.Fix = "point those applications at the gateway, set Force Encryption = Yes on SQL Server, and let only the gateway's address (" + v.Self + ") reach it"
	} else {
		c.Verdict = Pass
		c.Finding = fmt.Sprintf("%d connection(s), all encrypted, all from the gateway's address %s (sys.dm_exec_connections)", len(v.Connections), v.Self)
	}
	a.r.add(c)

	for _, d := range v.Databases {
		if d.System {
			continue
		}
		c := Check{ID: id + ".tde", Section: "sql_server", Subject: d.Name, Title: "Database " + d.Name + " encrypted at rest (TDE)"}
		if d.Encrypted {
			c.Verdict, c.Finding = Pass, "is_encrypted = 1"
		} else {
			c.Verdict, c.Finding = Fail, "is_encrypted = 0: the database files and backups are readable by whoever gets them"
			c.Fix = "enable Transparent Data Encryption on " + d.Name + " (CREATE DATABASE ENCRYPTION KEY; ALTER DATABASE " + d.Name + " SET ENCRYPTION ON), or record why it holds no protected data"
		}
		a.r.add(c)
	}
}

// openAudit connects with the audit login to the upstream, verifying it
// exactly as the gateway does.
func (a *auditor) openAudit(l configs.SQLListener, password string) (*sql.DB, error) {
	u := l.Upstream
	tlsCfg, err := tlsmgr.ClientTLSConfig(u.TLS(), nil)
	if err != nil {
		return nil, err
	}
	ua, err := configs.ParseUpstreamAddress(u.Address)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("database", "master")
	q.Set("app name", "gateway-audit")
	q.Set("encrypt", "true")
	if u.Encryption == configs.UpstreamEncryptionStrict {
		q.Set("encrypt", "strict")
	}
	dsn := url.URL{Scheme: "sqlserver", User: url.UserPassword(l.Audit.User, password), Host: ua.Host, RawQuery: q.Encode()}
	if ua.Instance != "" {
		dsn.Path = ua.Instance
	} else {
		dsn.Host = u.Address
	}
	cfg, err := msdsn.Parse(dsn.String())
	if err != nil {
		return nil, err
	}
	cfg.TLSConfig = tlsCfg
	return sql.OpenDB(mssql.NewConnectorConfig(cfg)), nil
}

func (a *auditor) readView(ctx context.Context, db *sql.DB, v *SQLView) error {
	ctx, cancel := context.WithTimeout(ctx, 3*dialTimeout)
	defer cancel()
	if err := db.QueryRowContext(ctx, "SELECT @@VERSION").Scan(&v.Version); err != nil {
		return fmt.Errorf("SELECT @@VERSION: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT client_net_address FROM sys.dm_exec_connections WHERE session_id = @@SPID").Scan(&v.Self); err != nil {
		return fmt.Errorf("reading the audit session's own address: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT session_id, encrypt_option, client_net_address, auth_scheme FROM sys.dm_exec_connections")
	if err != nil {
		return fmt.Errorf("sys.dm_exec_connections (needs VIEW SERVER STATE): %w", err)
	}
	for rows.Next() {
		var c Connection
		var enc string
		if err := rows.Scan(&c.SessionID, &enc, &c.Address, &c.AuthScheme); err != nil {
			rows.Close()
			return err
		}
		c.Encrypted = strings.EqualFold(enc, "TRUE")
		c.ViaGateway = c.Address == v.Self
		v.Connections = append(v.Connections, c)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	drows, err := db.QueryContext(ctx, "SELECT name, is_encrypted FROM sys.databases")
	if err != nil {
		return fmt.Errorf("sys.databases: %w", err)
	}
	defer drows.Close()
	for drows.Next() {
		var d Database
		if err := drows.Scan(&d.Name, &d.Encrypted); err != nil {
			return err
		}
		d.System = systemDatabases[strings.ToLower(d.Name)]
		v.Databases = append(v.Databases, d)
	}
	return drows.Err()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
