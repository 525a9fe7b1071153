package tdstest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// stmtKind is a statement this server can run.
type stmtKind int

const (
	stmtUnknown       stmtKind = iota
	stmtEmpty                  // whitespace only
	stmtSet                    // SET ...: accepted, no result
	stmtSelectInt              // SELECT <integer>
	stmtSelectVersion          // SELECT @@VERSION
	stmtRows                   // SELECT * FROM tdstest.rows(N, M)
	stmtNRows                  // SELECT * FROM tdstest.nrows(N, M)
	stmtWaitFor                // WAITFOR DELAY 'hh:mm:ss[.fff]'
	stmtScalars                // SELECT of session values: @@SPID, DB_NAME(), SERVERPROPERTY('...'), ...
	stmtBatch                  // several of the statements above without rows or delays, one result each
	stmtCatalog                // SELECT ... FROM sys.dm_exec_connections or sys.databases (catalog.go)
)

// statement is a parsed batch.
type statement struct {
	kind    stmtKind
	n       int64 // SELECT <integer>: the value; rows/nrows: row count
	m       int   // rows/nrows: bytes per value
	delay   time.Duration
	exprs   []expr       // stmtScalars
	catalog catalogQuery // stmtCatalog
	batch   []statement  // stmtBatch
	err     string       // why an otherwise recognised statement is refused
}

// simple reports whether st answers with one small result or a DONE, so
// that it may be one statement of a batch.
func (st statement) simple() bool {
	switch st.kind {
	case stmtEmpty, stmtSet, stmtSelectInt, stmtSelectVersion, stmtScalars, stmtCatalog:
		return st.err == ""
	}
	return false
}

// Limits on generated results, far above what tests and benchmarks need.
const (
	maxRows     = 1 << 40
	maxRowBytes = 1 << 30 // one PLP value
	maxDelay    = 24 * time.Hour
)

var (
	reSelectInt = regexp.MustCompile(`^select\s+([-+]?\d{1,10})$`)
	reVersion   = regexp.MustCompile(`^select\s+@@version$`)
	reRows      = regexp.MustCompile(`^select\s+\*\s+from\s+tdstest\.(rows|nrows)\s*\(\s*(\d{1,19})\s*,\s*(\d{1,19})\s*\)$`)
	reWaitFor   = regexp.MustCompile(`^waitfor\s+delay\s+'([^']*)'$`)
	reDelay     = regexp.MustCompile(`^(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,3}))?$`)
)

// parseStatement recognises the statements listed in the package
// documentation. Matching is case-insensitive and ignores surrounding
// whitespace and one trailing semicolon.
func parseStatement(text string) statement {
	if st, ok := parseBatch(text); ok {
		return st
	}
	s := strings.TrimSpace(text)
	s = strings.TrimSpace(strings.TrimSuffix(s, ";"))
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return statement{kind: stmtEmpty}
	case (strings.HasPrefix(lower, "set ") || strings.HasPrefix(lower, "set\t")) && len(splitBatch(s)) == 1:
		// One SET; a SET followed by other statements is a batch, answered
		// only when parseBatch knows each of them.
		return statement{kind: stmtSet}
	case reVersion.MatchString(lower):
		return statement{kind: stmtSelectVersion}
	}
	if m := reSelectInt.FindStringSubmatch(lower); m != nil {
		v, err := strconv.ParseInt(m[1], 10, 32)
		if err != nil {
			return statement{kind: stmtUnknown, err: "integer out of range for INT"}
		}
		return statement{kind: stmtSelectInt, n: v}
	}
	if m := reRows.FindStringSubmatch(lower); m != nil {
		n, err1 := strconv.ParseInt(m[2], 10, 64)
		size, err2 := strconv.ParseInt(m[3], 10, 64)
		st := statement{kind: stmtRows, n: n, m: int(size)}
		if m[1] == "nrows" {
			st.kind = stmtNRows
		}
		switch {
		case err1 != nil || n > maxRows:
			st.err = fmt.Sprintf("row count above %d", int64(maxRows))
		case err2 != nil || size > maxRowBytes:
			st.err = fmt.Sprintf("value size above %d bytes", maxRowBytes)
		case st.kind == stmtNRows && size%2 != 0:
			st.err = "nrows needs an even byte count (UTF-16)"
		}
		return st
	}
	if m := reWaitFor.FindStringSubmatch(lower); m != nil {
		d, ok := parseDelay(m[1])
		if !ok {
			return statement{kind: stmtWaitFor, err: fmt.Sprintf("bad delay %q: want 'hh:mm:ss[.fff]' below 24 hours", m[1])}
		}
		return statement{kind: stmtWaitFor, delay: d}
	}
	if q, ok := parseCatalog(lower); ok {
		return statement{kind: stmtCatalog, catalog: q}
	}
	if rest, ok := strings.CutPrefix(lower, "select"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r') {
		if exprs, ok := parseScalars(strings.TrimSpace(rest)); ok {
			return statement{kind: stmtScalars, exprs: exprs}
		}
	}
	return statement{kind: stmtUnknown}
}

// parseBatch is parseStatement for a batch of several statements (lines,
// or ';'), each of them simple: a session-setup batch. ok is false for a
// single statement or one that is not simple.
func parseBatch(text string) (statement, bool) {
	parts := splitBatch(text)
	if len(parts) < 2 {
		return statement{}, false
	}
	batch := make([]statement, 0, len(parts))
	for _, p := range parts {
		st := parseStatement(p)
		if !st.simple() {
			return statement{}, false
		}
		batch = append(batch, st)
	}
	return statement{kind: stmtBatch, batch: batch}, true
}

// parseDelay parses WAITFOR DELAY's 'hh:mm:ss[.fff]'.
func parseDelay(s string) (time.Duration, bool) {
	m := reDelay.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	sec, _ := strconv.Atoi(m[3])
	if mi > 59 || sec > 59 {
		return 0, false
	}
	d := time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(sec)*time.Second
	if m[4] != "" {
		frac := m[4] + strings.Repeat("0", 3-len(m[4]))
		ms, _ := strconv.Atoi(frac)
		d += time.Duration(ms) * time.Millisecond
	}
	if d >= maxDelay {
		return 0, false
	}
	return d, true
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
