package r53test

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const xmlns = "https://route53.amazonaws.com/doc/2013-04-01/"

// Server is a running double. Its credentials are what a test exports as
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
type Server struct {
	URL          string
	AccessKey    string
	SecretKey    string
	SessionToken string
	Region       string // the region requests must be signed for

	mu         sync.Mutex
	zones      []*zone
	changes    map[string]int // change ID -> GetChange calls so far
	nextChange int
	violations []string
	ops        []string // "ChangeResourceRecordSets UPSERT TXT name", ...
}

type zone struct {
	id, name string // name: FQDN, lower case
	private  bool
	sets     map[setKey]*rrset
}

type setKey struct{ name, typ string }

type rrset struct {
	ttl    int64
	values []string // as sent (TXT quoted)
}

// Start runs a double with fresh test credentials; it stops when the test
// ends.
func Start(t testing.TB) *Server {
	s := &Server{
		AccessKey:    "AKIDR53TESTDOUBLE01",
		SecretKey:    "r53test-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		SessionToken: "r53test-session-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Region:       "us-east-1",
		changes:      map[string]int{},
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// AddZone creates a hosted zone and returns its ID (without
// "/hostedzone/").
func (s *Server) AddZone(name string, private bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("Z%05dR53TEST", len(s.zones)+1)
	s.zones = append(s.zones, &zone{id: id, name: fqdn(name), private: private, sets: map[setKey]*rrset{}})
	return id
}

// TXT returns the decoded values of the TXT record set at name, in every
// zone (sorted).
func (s *Server) TXT(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, z := range s.zones {
		if set := z.sets[setKey{fqdn(name), "TXT"}]; set != nil {
			for _, v := range set.values {
				out = append(out, unquote(v))
			}
		}
	}
	slices.Sort(out)
	return out
}

// Violations lists every request the real service would have refused for
// its signature or its content; a test expects none.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// Ops lists the operations served, in order.
func (s *Server) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := s.verifySigV4(r, body, time.Now()); err != nil {
		// Like AWS, the message shows the canonical request the service
		// computed, which carries the session token: the provider must keep
		// such messages out of its errors and logs.
		s.refuse(w, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. %v", err)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/2013-04-01/")
	parts := strings.Split(path, "/")
	switch {
	case r.Method == http.MethodGet && path == "hostedzonesbyname":
		s.listZones(w, r)
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset":
		z := s.zone(parts[1])
		switch {
		case z == nil:
			s.refuse(w, http.StatusNotFound, "NoSuchHostedZone", "no hosted zone %s", parts[1])
		case r.Method == http.MethodPost:
			s.change(w, z, body)
		case r.Method == http.MethodGet:
			s.listSets(w, r, z)
		default:
			s.refuse(w, http.StatusMethodNotAllowed, "InvalidInput", "%s %s", r.Method, r.URL.Path)
		}
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "change":
		s.getChange(w, parts[1])
	default:
		s.refuse(w, http.StatusNotFound, "InvalidInput", "unknown operation %s %s", r.Method, r.URL.Path)
	}
}

func (s *Server) zone(id string) *zone {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range s.zones {
		if z.id == id {
			return z
		}
	}
	return nil
}

// refuse answers with an AWS query-protocol error and records it as a
// violation.
func (s *Server) refuse(w http.ResponseWriter, status int, code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, code+": "+msg)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	type errBody struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     errBody  `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}{Xmlns: xmlns, Error: errBody{"Sender", code, msg}, RequestID: "r53test"})
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "text/xml")
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}

type xmlRRSet struct {
	Name            string  `xml:"Name"`
	Type            string  `xml:"Type"`
	TTL             *int64  `xml:"TTL"`
	ResourceRecords []xmlRR `xml:"ResourceRecords>ResourceRecord"`
}

type xmlRR struct {
	Value string `xml:"Value"`
}

func (s xmlRRSet) values() []string {
	out := make([]string, len(s.ResourceRecords))
	for i, r := range s.ResourceRecords {
		out[i] = r.Value
	}
	return out
}

func toXMLRRs(values []string) []xmlRR {
	out := make([]xmlRR, len(values))
	for i, v := range values {
		out[i] = xmlRR{v}
	}
	return out
}

type xmlChangeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
}

// txtValueRE is one or more double-quoted strings separated by spaces.
var txtValueRE = regexp.MustCompile(`^"(?:[^"\\]|\\.)*"(?: "(?:[^"\\]|\\.)*")*$`)

func (s *Server) change(w http.ResponseWriter, z *zone, body []byte) {
	var req struct {
		XMLName xml.Name `xml:"ChangeResourceRecordSetsRequest"`
		Changes []struct {
			Action string   `xml:"Action"`
			Set    xmlRRSet `xml:"ResourceRecordSet"`
		} `xml:"ChangeBatch>Changes>Change"`
	}
	if err := xml.Unmarshal(body, &req); err != nil || req.XMLName.Space != xmlns {
		s.refuse(w, http.StatusBadRequest, "InvalidInput", "request body is not a ChangeResourceRecordSetsRequest in %s: %v\n%s", xmlns, err, body)
		return
	}
	if len(req.Changes) == 0 {
		s.refuse(w, http.StatusBadRequest, "InvalidChangeBatch", "empty change batch")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[setKey]*rrset{}
	for k, v := range z.sets {
		next[k] = v
	}
	var ops []string
	for _, c := range req.Changes {
		set := c.Set
		key := setKey{fqdn(set.Name), set.Type}
		if !(key.name == z.name || strings.HasSuffix(key.name, "."+z.name)) {
			s.refuseLocked(w, "InvalidChangeBatch", "%s is not in zone %s", set.Name, z.name)
			return
		}
		if set.TTL == nil || *set.TTL < 0 || len(set.ResourceRecords) == 0 {
			s.refuseLocked(w, "InvalidChangeBatch", "%s %s: a TTL and at least one ResourceRecord are required", set.Name, set.Type)
			return
		}
		for _, v := range set.values() {
			if set.Type == "TXT" && (!txtValueRE.MatchString(v) || longString(v)) {
				s.refuseLocked(w, "InvalidChangeBatch", "Invalid Resource Record: FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks, each string at most 255 characters) encountered with '%s'", v)
				return
			}
		}
		cur := next[key]
		switch c.Action {
		case "CREATE":
			if cur != nil {
				s.refuseLocked(w, "InvalidChangeBatch", "Tried to create resource record set [name='%s', type='%s'] but it already exists", key.name, key.typ)
				return
			}
			next[key] = &rrset{ttl: *set.TTL, values: set.values()}
		case "UPSERT":
			next[key] = &rrset{ttl: *set.TTL, values: set.values()}
		case "DELETE":
			if cur == nil || cur.ttl != *set.TTL || !sameSet(cur.values, set.values()) {
				s.refuseLocked(w, "InvalidChangeBatch", "Tried to delete resource record set [name='%s', type='%s'] but the values provided do not match the current values", key.name, key.typ)
				return
			}
			delete(next, key)
		default:
			s.refuseLocked(w, "InvalidInput", "unknown action %q", c.Action)
			return
		}
		ops = append(ops, fmt.Sprintf("ChangeResourceRecordSets %s %s %s %s", c.Action, set.Type, key.name, strings.Join(set.values(), " ")))
	}
	z.sets = next
	s.ops = append(s.ops, ops...)
	s.nextChange++
	id := fmt.Sprintf("C%08dR53TEST", s.nextChange)
	s.changes[id] = 0
	writeXML(w, struct {
		XMLName    xml.Name      `xml:"ChangeResourceRecordSetsResponse"`
		Xmlns      string        `xml:"xmlns,attr"`
		ChangeInfo xmlChangeInfo `xml:"ChangeInfo"`
	}{Xmlns: xmlns, ChangeInfo: xmlChangeInfo{"/change/" + id, "PENDING", time.Now().UTC().Format(time.RFC3339)}})
}

func (s *Server) refuseLocked(w http.ResponseWriter, code, format string, args ...any) {
	s.mu.Unlock()
	defer s.mu.Lock()
	s.refuse(w, http.StatusBadRequest, code, format, args...)
}

// getChange answers PENDING the first time a change is asked about and
// INSYNC from then on, as Route 53 does once its servers have the change.
func (s *Server) getChange(w http.ResponseWriter, id string) {
	s.mu.Lock()
	n, ok := s.changes[id]
	if ok {
		s.changes[id] = n + 1
		s.ops = append(s.ops, "GetChange "+id)
	}
	s.mu.Unlock()
	if !ok {
		s.refuse(w, http.StatusNotFound, "NoSuchChange", "no change %s", id)
		return
	}
	status := "INSYNC"
	if n == 0 {
		status = "PENDING"
	}
	writeXML(w, struct {
		XMLName    xml.Name      `xml:"GetChangeResponse"`
		Xmlns      string        `xml:"xmlns,attr"`
		ChangeInfo xmlChangeInfo `xml:"ChangeInfo"`
	}{Xmlns: xmlns, ChangeInfo: xmlChangeInfo{"/change/" + id, status, time.Now().UTC().Format(time.RFC3339)}})
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	start := reversed(fqdn(q.Get("dnsname")))
	max := atoiOr(q.Get("maxitems"), 100)
	s.mu.Lock()
	zones := slices.Clone(s.zones)
	s.ops = append(s.ops, "ListHostedZonesByName "+q.Get("dnsname"))
	s.mu.Unlock()
	slices.SortFunc(zones, func(a, b *zone) int { return strings.Compare(reversed(a.name), reversed(b.name)) })
	type xmlZone struct {
		ID      string `xml:"Id"`
		Name    string `xml:"Name"`
		Ref     string `xml:"CallerReference"`
		Private bool   `xml:"Config>PrivateZone"`
		Count   int    `xml:"ResourceRecordSetCount"`
	}
	var out []xmlZone
	truncated := false
	for _, z := range zones {
		if q.Get("dnsname") != "" && reversed(z.name) < start {
			continue
		}
		if len(out) == max {
			truncated = true
			break
		}
		out = append(out, xmlZone{"/hostedzone/" + z.id, z.name, "r53test", z.private, len(z.sets)})
	}
	writeXML(w, struct {
		XMLName     xml.Name  `xml:"ListHostedZonesByNameResponse"`
		Xmlns       string    `xml:"xmlns,attr"`
		HostedZones []xmlZone `xml:"HostedZones>HostedZone"`
		DNSName     string    `xml:"DNSName,omitempty"`
		IsTruncated bool      `xml:"IsTruncated"`
		MaxItems    int       `xml:"MaxItems"`
	}{Xmlns: xmlns, HostedZones: out, DNSName: q.Get("dnsname"), IsTruncated: truncated, MaxItems: max})
}

// listSets answers ListResourceRecordSets in Route 53's order (names by
// reversed labels, then type), from name and type when given.
func (s *Server) listSets(w http.ResponseWriter, r *http.Request, z *zone) {
	q := r.URL.Query()
	max := atoiOr(q.Get("maxitems"), 300)
	s.mu.Lock()
	var keys []setKey
	for k := range z.sets {
		keys = append(keys, k)
	}
	sets := z.sets
	s.ops = append(s.ops, fmt.Sprintf("ListResourceRecordSets %s %s", q.Get("name"), q.Get("type")))
	s.mu.Unlock()
	order := func(k setKey) string { return reversed(k.name) + " " + k.typ }
	slices.SortFunc(keys, func(a, b setKey) int { return strings.Compare(order(a), order(b)) })
	from := ""
	if q.Get("name") != "" {
		from = order(setKey{fqdn(q.Get("name")), q.Get("type")})
	}
	var out []xmlRRSet
	var next *setKey
	for _, k := range keys {
		if order(k) < from {
			continue
		}
		if len(out) == max {
			next = &k
			break
		}
		set := sets[k]
		ttl := set.ttl
		out = append(out, xmlRRSet{Name: k.name, Type: k.typ, TTL: &ttl, ResourceRecords: toXMLRRs(set.values)})
	}
	resp := struct {
		XMLName     xml.Name   `xml:"ListResourceRecordSetsResponse"`
		Xmlns       string     `xml:"xmlns,attr"`
		Sets        []xmlRRSet `xml:"ResourceRecordSets>ResourceRecordSet"`
		IsTruncated bool       `xml:"IsTruncated"`
		NextName    string     `xml:"NextRecordName,omitempty"`
		NextType    string     `xml:"NextRecordType,omitempty"`
		MaxItems    int        `xml:"MaxItems"`
	}{Xmlns: xmlns, Sets: out, MaxItems: max}
	if next != nil {
		resp.IsTruncated, resp.NextName, resp.NextType = true, next.name, next.typ
	}
	writeXML(w, resp)
}

func fqdn(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

// reversed is a name's labels in reverse order ("app.example.com." ->
// "com.example.app"), the order Route 53 lists names in.
func reversed(n string) string {
	labels := strings.Split(strings.TrimSuffix(n, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n
	}
	return def
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// unquote joins the quoted strings of a TXT value and resolves \" and \\.
func unquote(v string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			in = !in
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case in:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// longString reports a quoted string longer than 255 characters.
func longString(v string) bool {
	n, in := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			if in && n > 255 {
				return true
			}
			in, n = !in, 0
		case c == '\\':
			i++
			n++
		case in:
			n++
		}
	}
	return false
}
