package tdstest

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Drivers send session-setup batches right after login: jTDS
// "SELECT @@MAX_PRECISION" with SET statements, JDBC and ODBC drivers
// SERVERPROPERTY and @@ variables. The double answers SELECTs of such
// expressions, and batches made of several statements (one per line or
// separated by ';'), each SELECT a result set and each SET a DONE, as SQL
// Server does.

// exprKind is one expression of a scalar SELECT.
type exprKind int

const (
	exprInt            exprKind = iota // an integer literal
	exprVersion                        // @@VERSION
	exprMaxPrecision                   // @@MAX_PRECISION: 38
	exprTranCount                      // @@TRANCOUNT: 1 inside a transaction, else 0
	exprSPID                           // @@SPID
	exprServerName                     // @@SERVERNAME
	exprLanguage                       // @@LANGUAGE: us_english
	exprDBName                         // DB_NAME()
	exprServerProperty                 // SERVERPROPERTY('name')
)

// expr is one column of a scalar SELECT.
type expr struct {
	kind  exprKind
	n     int64  // exprInt
	prop  string // exprServerProperty, lower case
	alias string // AS alias, or ""
}

var (
	reExprInt      = regexp.MustCompile(`^[-+]?\d{1,10}$`)
	reServerProp   = regexp.MustCompile(`^serverproperty\s*\(\s*n?'([a-z]+)'\s*\)$`)
	reAlias        = regexp.MustCompile(`^(.*?)\s+(?:as\s+)?\[?([a-z_][a-z0-9_]*)\]?$`)
	scalarKeywords = map[string]exprKind{
		"@@version":       exprVersion,
		"@@max_precision": exprMaxPrecision,
		"@@trancount":     exprTranCount,
		"@@spid":          exprSPID,
		"@@servername":    exprServerName,
		"@@language":      exprLanguage,
		"db_name()":       exprDBName,
	}
)

// parseScalars parses the expression list of "SELECT e1, e2, ..." (lower
// case, SELECT removed); ok is false if any expression is unknown.
func parseScalars(list string) ([]expr, bool) {
	parts := strings.Split(list, ",")
	out := make([]expr, 0, len(parts))
	for _, p := range parts {
		e, ok := parseExpr(strings.TrimSpace(p))
		if !ok {
			return nil, false
		}
		out = append(out, e)
	}
	return out, len(out) > 0
}

func parseExpr(s string) (expr, bool) {
	if e, ok := bareExpr(s); ok {
		return e, true
	}
	if m := reAlias.FindStringSubmatch(s); m != nil {
		if e, ok := bareExpr(strings.TrimSpace(m[1])); ok {
			e.alias = m[2]
			return e, true
		}
	}
	return expr{}, false
}

func bareExpr(s string) (expr, bool) {
	if k, ok := scalarKeywords[s]; ok {
		return expr{kind: k}, true
	}
	if reExprInt.MatchString(s) {
		n, err := strconv.ParseInt(s, 10, 32)
		return expr{kind: exprInt, n: n}, err == nil
	}
	if m := reServerProp.FindStringSubmatch(s); m != nil {
		return expr{kind: exprServerProperty, prop: m[1]}, true
	}
	return expr{}, false
}

// serverProperties are the SERVERPROPERTY values drivers ask for, as
// NVARCHAR (SQL Server returns sql_variant; drivers convert). A property
// not listed is NULL, as SQL Server answers for unknown names.
func (ss *session) serverProperty(name string) (string, bool) {
	switch name {
	case "productversion":
		return "16.0.1000.6", true
	case "productlevel":
		return "RTM", true
	case "productmajorversion":
		return "16", true
	case "edition":
		return "Developer Edition (64-bit)", true
	case "engineedition":
		return "3", true
	case "machinename", "servername":
		return ss.cfg.serverName(), true
	case "instancename":
		if ss.cfg.Instance == "" {
			return "", false
		}
		return ss.cfg.Instance, true
	case "isclustered", "ishadrenabled", "isintegratedsecurityonly":
		return "0", true
	case "collation":
		return "SQL_Latin1_General_CP1_CI_AS", true
	}
	return "", false
}

// value is an expression evaluated: an INT, or an NVARCHAR that may be NULL.
type value struct {
	isInt bool
	n     int32
	s     string
	null  bool
}

func (ss *session) eval(e expr) value {
	switch e.kind {
	case exprInt:
		return value{isInt: true, n: int32(e.n)}
	case exprMaxPrecision:
		return value{isInt: true, n: 38}
	case exprTranCount:
		if ss.tran != 0 {
			return value{isInt: true, n: 1}
		}
		return value{isInt: true}
	case exprSPID:
		return value{isInt: true, n: int32(ss.spid)}
	case exprVersion:
		return value{s: ss.cfg.version()}
	case exprServerName:
		if ss.cfg.Instance != "" {
			return value{s: ss.cfg.serverName() + `\` + ss.cfg.Instance}
		}
		return value{s: ss.cfg.serverName()}
	case exprLanguage:
		return value{s: "us_english"}
	case exprDBName:
		return value{s: ss.currentDB()}
	case exprServerProperty:
		s, ok := ss.serverProperty(e.prop)
		return value{s: s, null: !ok}
	}
	return value{null: true}
}

// currentDB is the database the login asked for, or the default one.
func (ss *session) currentDB() string {
	var db string
	ss.srv.rec.mu.Lock()
	db = ss.rec.Database
	ss.srv.rec.mu.Unlock()
	if db == "" {
		return ss.cfg.database()
	}
	return db
}

// appendScalars appends the COLMETADATA, ROW and DONE of a scalar SELECT.
func (ss *session) appendScalars(b []byte, exprs []expr, done tds.Done) []byte {
	cols := make([]column, len(exprs))
	vals := make([]value, len(exprs))
	for i, e := range exprs {
		vals[i] = ss.eval(e)
		cols[i] = column{name: e.alias, typ: typeInt4}
		if !vals[i].isInt {
			cols[i] = column{name: e.alias, typ: typeNVarChar, maxLen: max(256, 2*len(vals[i].s)), flags: flagNullable}
		}
	}
	b = appendColMetadata(b, ss.ver, cols)
	b = append(b, byte(tds.TokenRow))
	for _, v := range vals {
		switch {
		case v.isInt:
			b = binary.LittleEndian.AppendUint32(b, uint32(v.n))
		case v.null:
			b = binary.LittleEndian.AppendUint16(b, 0xFFFF) // CHARBIN_NULL
		default:
			b = appendShortValue(b, appendUCS2(nil, truncate(v.s, maxShortLen/2)))
		}
	}
	return selectDone(b, ss.ver, done, 1)
}

// splitBatch cuts a batch into statements at line breaks and at
// semicolons outside quotes; empty statements are dropped.
func splitBatch(text string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for _, r := range text {
		switch {
		case r == '\'':
			quoted = !quoted
			cur.WriteRune(r)
		case !quoted && (r == ';' || r == '\n' || r == '\r'):
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}
