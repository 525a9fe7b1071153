package route53

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/libdns/libdns"
)

// recordSet is the part of one call that touches one record set.
type recordSet struct {
	name   string // FQDN, lower case
	typ    string
	ttl    int64    // seconds; 0 when none was given
	values []string // in Route 53's form (TXT quoted)
}

// groupSets gathers recs by (name, type), in order of appearance.
func groupSets(zone string, recs []libdns.Record) ([]*recordSet, error) {
	var out []*recordSet
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Name == "" {
			return nil, fmt.Errorf("route53: a record without a name")
		}
		name := canonical(libdns.AbsoluteName(rr.Name, zone))
		typ := strings.ToUpper(rr.Type)
		if typ == "" {
			return nil, fmt.Errorf("route53: record %s has no type (Route 53 keys record sets by name and type)", name)
		}
		var s *recordSet
		for _, o := range out {
			if o.name == name && o.typ == typ {
				s = o
			}
		}
		if s == nil {
			s = &recordSet{name: name, typ: typ}
			out = append(out, s)
		}
		if ttl := int64(rr.TTL / time.Second); ttl > 0 {
			s.ttl = ttl
		}
		v := ""
		if rr.Data != "" {
			v = encodeValue(typ, rr.Data)
		}
		if !contains(s.values, v) {
			s.values = append(s.values, v)
		}
	}
	return out, nil
}

// encodeValue is a record's data as Route 53 takes it: TXT data in double
// quotes, split into strings of at most 255 bytes, with '"' and '\'
// escaped; other types as given.
func encodeValue(typ, data string) string {
	if typ != "TXT" {
		return data
	}
	var parts []string
	for {
		n := min(len(data), 255)
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < n; i++ {
			if c := data[i]; c == '"' || c == '\\' {
				b.WriteByte('\\')
				b.WriteByte(c)
			} else {
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		parts = append(parts, b.String())
		data = data[n:]
		if data == "" {
			return strings.Join(parts, " ")
		}
	}
}

// decodeValue undoes encodeValue for TXT values: the quoted strings
// joined, escapes (\" \\ and octal \ooo) resolved.
func decodeValue(typ, v string) string {
	if typ != "TXT" {
		return v
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			in = !in
		case c == '\\' && i+1 < len(v):
			if n, err := strconv.ParseUint(v[i+1:min(i+4, len(v))], 8, 8); err == nil && i+3 < len(v) {
				// Route 53 escapes in octal (\052 is '*').
				b.WriteByte(byte(n))
				i += 3
			} else {
				i++
				b.WriteByte(v[i])
			}
		case in:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func newSet(name, typ string, ttl int64, vals []string) *types.ResourceRecordSet {
	if ttl == 0 {
		ttl = 60
	}
	rrs := make([]types.ResourceRecord, len(vals))
	for i, v := range vals {
		rrs[i] = types.ResourceRecord{Value: aws.String(v)}
	}
	return &types.ResourceRecordSet{Name: aws.String(name), Type: types.RRType(typ), TTL: aws.Int64(ttl), ResourceRecords: rrs}
}

func values(s *types.ResourceRecordSet) []string {
	out := make([]string, 0, len(s.ResourceRecords))
	for _, r := range s.ResourceRecords {
		out = append(out, aws.ToString(r.Value))
	}
	return out
}

// fromSet returns one libdns record per value of a simple record set.
func fromSet(s types.ResourceRecordSet, zone string) []libdns.Record {
	if s.AliasTarget != nil {
		return nil
	}
	name := canonical(unescapeName(aws.ToString(s.Name)))
	var out []libdns.Record
	for _, v := range values(&s) {
		out = append(out, toRecord(name, string(s.Type), aws.ToInt64(s.TTL), v, zone))
	}
	return out
}

func toRecord(name, typ string, ttl int64, value, zone string) libdns.Record {
	rel := strings.TrimSuffix(name, ".")
	if zone != "" {
		rel = libdns.RelativeName(name, zone)
	}
	rr := libdns.RR{Name: rel, TTL: time.Duration(ttl) * time.Second, Type: typ, Data: decodeValue(typ, value)}
	if r, err := rr.Parse(); err == nil {
		return r
	}
	return rr
}

// unescapeName turns Route 53's octal escapes in names (\052 for '*')
// back into characters.
func unescapeName(n string) string {
	if !strings.Contains(n, `\`) {
		return n
	}
	return decodeValue("TXT", `"`+n+`"`)
}

// canonical is a name as an absolute, lower-case FQDN.
func canonical(n string) string {
	n = strings.ToLower(strings.TrimSpace(n))
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

func inZone(name, zone string) bool {
	return zone == "" || name == zone || strings.HasSuffix(name, "."+zone)
}

func contains(list []string, v string) bool { return slices.Contains(list, v) }

func sameValues(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// describe lists a change batch for errors and logs: "UPSERT TXT
// _acme-challenge.app.example.com.".
func describe(changes []types.Change) string {
	parts := make([]string, len(changes))
	for i, c := range changes {
		parts[i] = fmt.Sprintf("%s %s %s", c.Action, c.ResourceRecordSet.Type, aws.ToString(c.ResourceRecordSet.Name))
	}
	return strings.Join(parts, ", ")
}
