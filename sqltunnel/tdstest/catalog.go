package tdstest

import (
	"encoding/binary"
	"net"
	"regexp"
	"strings"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// The catalog views an audit of encryption reads, answered from the
// double's own state (and rows a test injects):
//
//	SELECT <columns> FROM sys.dm_exec_connections [WHERE session_id = @@SPID]
//	    columns among session_id, encrypt_option, client_net_address,
//	    auth_scheme, net_transport, protocol_type; one row per live session
//	    (encrypt_option TRUE when the whole session is inside TLS), then
//	    Config.Connections
//	SELECT <columns> FROM sys.databases
//	    columns among name, database_id, is_encrypted; master, then
//	    Config.Databases

// ConnectionRow is a row of sys.dm_exec_connections a test adds to those
// of the live sessions: a client that connects around the gateway, say.
type ConnectionRow struct {
	SessionID        int
	Encrypted        bool   // encrypt_option TRUE or FALSE
	ClientNetAddress string // an IP address
	AuthScheme       string // SQL, NTLM, KERBEROS; "" means SQL
}

// DatabaseRow is a row of sys.databases beyond master.
type DatabaseRow struct {
	Name      string
	Encrypted bool // is_encrypted: TDE at rest
}

const typeBit = 0x32 // BIT, fixed length

var (
	reCatalog = regexp.MustCompile(`^select\s+(.+?)\s+from\s+sys\.(dm_exec_connections|databases)(?:\s+where\s+session_id\s*=\s*@@spid)?$`)
	reColumn  = regexp.MustCompile(`^[a-z_]+$`)

	connectionColumns = map[string]byte{
		"session_id": typeInt4, "encrypt_option": typeNVarChar, "client_net_address": typeNVarChar,
		"auth_scheme": typeNVarChar, "net_transport": typeNVarChar, "protocol_type": typeNVarChar,
	}
	databaseColumns = map[string]byte{"name": typeNVarChar, "database_id": typeInt4, "is_encrypted": typeBit}
)

// catalogQuery is a parsed SELECT of a catalog view.
type catalogQuery struct {
	view    string // dm_exec_connections or databases
	columns []string
	self    bool // WHERE session_id = @@SPID
}

// parseCatalog recognises the catalog SELECTs above (lower case text).
func parseCatalog(lower string) (catalogQuery, bool) {
	m := reCatalog.FindStringSubmatch(lower)
	if m == nil {
		return catalogQuery{}, false
	}
	q := catalogQuery{view: m[2], self: strings.Contains(lower, "@@spid")}
	known := connectionColumns
	if q.view == "databases" {
		if q.self {
			return catalogQuery{}, false
		}
		known = databaseColumns
	}
	for _, c := range strings.Split(m[1], ",") {
		c = strings.TrimSpace(c)
		if !reColumn.MatchString(c) || known[c] == 0 {
			return catalogQuery{}, false
		}
		q.columns = append(q.columns, c)
	}
	return q, true
}

// appendCatalog appends the result of q: COLMETADATA, one ROW per row, DONE.
func (ss *session) appendCatalog(b []byte, q catalogQuery, done tds.Done) []byte {
	known := connectionColumns
	rows := ss.connectionRows(q.self)
	if q.view == "databases" {
		known = databaseColumns
		rows = ss.databaseRows()
	}
	cols := make([]column, len(q.columns))
	for i, name := range q.columns {
		cols[i] = column{name: name, typ: known[name]}
		if cols[i].typ == typeNVarChar {
			cols[i].maxLen, cols[i].flags = 256, flagNullable
		}
	}
	b = appendColMetadata(b, ss.ver, cols)
	for _, r := range rows {
		b = append(b, byte(tds.TokenRow))
		for _, name := range q.columns {
			switch v := r[name].(type) {
			case int:
				b = binary.LittleEndian.AppendUint32(b, uint32(v))
			case bool:
				bit := byte(0)
				if v {
					bit = 1
				}
				b = append(b, bit)
			case string:
				b = appendShortValue(b, appendUCS2(nil, truncate(v, 128)))
			}
		}
	}
	return selectDone(b, ss.ver, done, uint64(len(rows)))
}

// connectionRows lists the live sessions, this one only when self, then
// the configured rows.
func (ss *session) connectionRows(self bool) []map[string]any {
	var rows []map[string]any
	for _, r := range ss.srv.rec.snapshot() {
		if r.Outcome != OutcomeActive || !r.LoggedIn {
			continue
		}
		spid := firstSPID + r.ID - 1
		if self && spid != int(ss.spid) {
			continue
		}
		host, _, err := net.SplitHostPort(r.Remote)
		if err != nil {
			host = r.Remote
		}
		rows = append(rows, connectionRow(ConnectionRow{SessionID: spid, Encrypted: r.Mode == ModeFull || r.Mode == ModeStrict,
			ClientNetAddress: host, AuthScheme: r.AuthScheme}))
	}
	if !self {
		for _, c := range ss.cfg.Connections {
			rows = append(rows, connectionRow(c))
		}
	}
	return rows
}

func connectionRow(c ConnectionRow) map[string]any {
	enc, auth := "FALSE", c.AuthScheme
	if c.Encrypted {
		enc = "TRUE"
	}
	if auth == "" {
		auth = "SQL"
	}
	return map[string]any{
		"session_id": c.SessionID, "encrypt_option": enc, "client_net_address": c.ClientNetAddress,
		"auth_scheme": auth, "net_transport": "TCP", "protocol_type": "TSQL",
	}
}

func (ss *session) databaseRows() []map[string]any {
	rows := []map[string]any{{"name": "master", "database_id": 1, "is_encrypted": false}}
	for i, d := range ss.cfg.Databases {
		rows = append(rows, map[string]any{"name": d.Name, "database_id": 5 + i, "is_encrypted": d.Encrypted})
	}
	return rows
}
