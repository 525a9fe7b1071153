package route53

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/libdns/libdns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gateway-project/gateway/tlsmgr/route53/r53test"
)

// sdkEnv gives the SDK's default chain the double's credentials through
// the environment, and nothing else: no shared files, no instance
// metadata (which would mean a request off this machine).
func sdkEnv(t *testing.T, d *r53test.Server, secret string) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", d.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", d.SessionToken)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
}

// newTestProvider is a provider whose SDK client talks to the double.
func newTestProvider(t *testing.T, d *r53test.Server, cfg Config) (*Provider, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	p, err := newProvider(context.Background(), cfg, func(o *r53.Options) { o.BaseEndpoint = aws.String(d.URL) })
	if err != nil {
		t.Fatal(err)
	}
	p.poll = 10 * time.Millisecond
	return p, logs
}

// checkNoCredentials fails when the secret key or session token appears
// in a log line (message or field) or in an error.
func checkNoCredentials(t *testing.T, d *r53test.Server, logs *observer.ObservedLogs, errs ...error) {
	t.Helper()
	var texts []string
	for _, e := range logs.All() {
		texts = append(texts, e.Message)
		for k, v := range e.ContextMap() {
			texts = append(texts, k+"="+fmt.Sprint(v))
		}
	}
	for _, err := range errs {
		if err != nil {
			texts = append(texts, err.Error())
		}
	}
	for _, s := range texts {
		for _, secret := range []string{d.SecretKey, d.SessionToken, "wrong-" + d.SecretKey} {
			if strings.Contains(s, secret) {
				t.Errorf("a credential appears in %q", s)
			}
		}
	}
}

func TestProviderAgainstDouble(t *testing.T) {
	d := r53test.Start(t)
	sdkEnv(t, d, d.SecretKey)
	private := d.AddZone("example.com", true)
	public := d.AddZone("example.com", false)
	d.AddZone("other.org", false)
	p, logs := newTestProvider(t, d, Config{})
	ctx := context.Background()
	const zone = "example.com."
	name := "_acme-challenge.app.example.com"

	if _, err := p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: "token-one"}}); err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	// A second challenge for the same name (example.com and *.example.com
	// share _acme-challenge.example.com) adds to the record set.
	long := strings.Repeat("y", 300) + ` "q" \`
	if _, err := p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: time.Minute, Text: long}}); err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	if got := d.TXT(name); !slices.Equal(got, []string{"token-one", long}) {
		t.Fatalf("double holds %q", got)
	}
	if got, want := p.zones["example.com."].id, public; got != want {
		t.Errorf("hosted zone %s, want the public one %s (not the private %s)", got, want, private)
	}

	list, err := p.GetRecords(ctx, zone)
	if err != nil {
		t.Fatalf("GetRecords: %v", err)
	}
	var txts []string
	for _, r := range list {
		if txt, ok := r.(libdns.TXT); ok && txt.Name == "_acme-challenge.app" {
			txts = append(txts, txt.Text)
		}
	}
	if slices.Sort(txts); !slices.Equal(txts, []string{"token-one", long}) {
		t.Errorf("GetRecords TXT = %q", txts)
	}

	if _, err := p.SetRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: 2 * time.Minute, Text: "only"}}); err != nil {
		t.Fatalf("SetRecords: %v", err)
	}
	if got := d.TXT(name); !slices.Equal(got, []string{"only"}) {
		t.Fatalf("after SetRecords the double holds %q", got)
	}
	if _, err := p.AppendRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: 2 * time.Minute, Text: "second"}}); err != nil {
		t.Fatal(err)
	}
	gone, err := p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", Text: "only"}})
	if err != nil || len(gone) != 1 || gone[0].RR().Data != "only" {
		t.Fatalf("DeleteRecords of one value = %v, %v", gone, err)
	}
	gone, err = p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", TTL: 2 * time.Minute, Text: "second"}})
	if err != nil || len(gone) != 1 {
		t.Fatalf("DeleteRecords of the last value = %v, %v", gone, err)
	}
	if got := d.TXT(name); len(got) != 0 {
		t.Errorf("after deleting the double holds %q", got)
	}
	gone, err = p.DeleteRecords(ctx, zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge.app", Text: "absent"}})
	if err != nil || len(gone) != 0 {
		t.Errorf("DeleteRecords of an absent record = %v, %v", gone, err)
	}

	ops := strings.Join(d.Ops(), "\n")
	for _, want := range []string{
		"ListHostedZonesByName _acme-challenge.app.example.com.",
		"ChangeResourceRecordSets UPSERT TXT " + name + `. "token-one"`,
		"ChangeResourceRecordSets DELETE TXT " + name + `. "second"`,
	} {
		if !strings.Contains(ops, want) {
			t.Errorf("the double saw no %q in:\n%s", want, ops)
		}
	}
	// Every change was waited for: PENDING at the first GetChange, INSYNC
	// at the second.
	if n, m := strings.Count(ops, "GetChange "), strings.Count(ops, "ChangeResourceRecordSets "); n != 2*m {
		t.Errorf("%d GetChange calls for %d changes, want two each (PENDING, INSYNC)", n, m)
	}
	if v := d.Violations(); len(v) > 0 {
		t.Errorf("the double refused requests the real API would have refused:\n%s", strings.Join(v, "\n"))
	}
	if logs.FilterMessage("route53 change in sync").Len() == 0 {
		t.Errorf("no change logged in sync")
	}
	checkNoCredentials(t, d, logs)
}

// TestProviderConfiguredZone: with hosted_zone_id the zone is not looked
// up; a record outside the zone named by tls.acme.dns.zone is refused.
func TestProviderConfiguredZone(t *testing.T) {
	d := r53test.Start(t)
	sdkEnv(t, d, d.SecretKey)
	id := d.AddZone("clinic.example", false)
	p, logs := newTestProvider(t, d, Config{HostedZoneID: "/hostedzone/" + id, Zone: "clinic.example"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.AppendRecords(ctx, "", []libdns.Record{libdns.TXT{Name: "_acme-challenge.sql", Text: "t"}}); err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	if got := d.TXT("_acme-challenge.sql.clinic.example"); !slices.Equal(got, []string{"t"}) {
		t.Errorf("double holds %q", got)
	}
	if strings.Contains(strings.Join(d.Ops(), "\n"), "ListHostedZonesByName") {
		t.Errorf("looked the zone up although hosted_zone_id is set")
	}
	_, err := p.AppendRecords(ctx, "other.example.", []libdns.Record{libdns.TXT{Name: "x", Text: "t"}})
	if err == nil || !strings.Contains(err.Error(), "not in hosted zone") {
		t.Errorf("record outside the zone: %v", err)
	}
	checkNoCredentials(t, d, logs, err)
}

// TestProviderWrongSecret: the double really verifies signatures; the
// refusal names the operation but carries no credential.
func TestProviderWrongSecret(t *testing.T) {
	d := r53test.Start(t)
	sdkEnv(t, d, "wrong-"+d.SecretKey)
	d.AddZone("example.com", false)
	p, logs := newTestProvider(t, d, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.AppendRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "t"}})
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("AppendRecords with a wrong secret = %v, want SignatureDoesNotMatch", err)
	}
	if v := d.Violations(); len(v) == 0 || !strings.Contains(v[0], "signature does not match") {
		t.Errorf("violations %q", v)
	}
	if got := d.TXT("_acme-challenge.example.com"); len(got) != 0 {
		t.Errorf("a refused change left %q", got)
	}
	checkNoCredentials(t, d, logs, err)
}

func TestNoHostedZone(t *testing.T) {
	d := r53test.Start(t)
	sdkEnv(t, d, d.SecretKey)
	d.AddZone("example.com", false)
	p, _ := newTestProvider(t, d, Config{})
	_, err := p.AppendRecords(context.Background(), "example.net.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "t"}})
	if err == nil || !strings.Contains(err.Error(), "no hosted zone for _acme-challenge.example.net") {
		t.Errorf("AppendRecords in an unknown zone = %v", err)
	}
}

func TestValueEncoding(t *testing.T) {
	for _, s := range []string{"plain", `q"uote`, `back\slash`, strings.Repeat("z", 600)} {
		v := encodeValue("TXT", s)
		if got := decodeValue("TXT", v); got != s {
			t.Errorf("round trip of %q via %q = %q", s, v, got)
		}
	}
	if got := unescapeName(`\052.example.com.`); got != "*.example.com." {
		t.Errorf("unescapeName = %q", got)
	}
}
