package route53

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/libdns/libdns"
	"go.uber.org/zap"
)

// Config is what the provider needs beyond the SDK's default chain.
type Config struct {
	// HostedZoneID is the hosted zone (without "/hostedzone/"); "" finds
	// it from each record's name.
	HostedZoneID string
	// Region is given to the SDK; "" uses the SDK's configuration
	// (AWS_REGION, the profile), else us-east-1, where Route 53's global
	// endpoint signs.
	Region string
	// Zone, when set, is the zone name record names are resolved in when
	// the caller gives none.
	Zone   string
	Logger *zap.Logger
}

// defaultPollInterval is how often GetChange is asked while a change is
// PENDING; Route 53 usually reports INSYNC within a minute.
const defaultPollInterval = 3 * time.Second

// Provider reads and writes record sets in Route 53. Safe for concurrent
// use: changes to one record set are serialized (Route 53 replaces whole
// record sets, so appending is a read followed by an UPSERT).
type Provider struct {
	client       *r53.Client
	hostedZoneID string
	zone         string
	log          *zap.Logger
	poll         time.Duration

	mu    sync.Mutex            // serializes read-modify-write of record sets
	zones map[string]hostedZone // found hosted zones, by name (FQDN)
}

type hostedZone struct {
	id   string // without "/hostedzone/"
	name string // FQDN, lower case
}

var (
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
)

// New builds a provider on the SDK's default configuration. Credentials
// are looked up at the first call, not here.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	return newProvider(ctx, cfg)
}

// newProvider is New with SDK client options; tests point the client at
// a double of the API with them. They are not a user setting.
func newProvider(ctx context.Context, cfg Config, optFns ...func(*r53.Options)) (*Provider, error) {
	loadOpts := []func(*awsconfig.LoadOptions) error{
		// The instance role is read through IMDSv2 only: no fallback to
		// IMDSv1, whose unauthenticated GET a server-side request forgery
		// on the host could replay.
		awsconfig.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) {
			o.Client = imds.New(imds.Options{EnableFallback: aws.FalseTernary})
		}),
	}
	if cfg.Region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("route53: loading the AWS SDK configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	p := &Provider{
		client:       r53.NewFromConfig(awsCfg, optFns...),
		hostedZoneID: strings.TrimPrefix(cfg.HostedZoneID, "/hostedzone/"),
		log:          log,
		poll:         defaultPollInterval,
		zones:        map[string]hostedZone{},
	}
	if cfg.Zone != "" {
		p.zone = canonical(cfg.Zone)
	}
	return p, nil
}

// AppendRecords adds recs to their record sets (UPSERT of the set with the
// new values added) and waits until Route 53 has them INSYNC.
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return p.modify(ctx, zone, recs, func(have, add []string) []string {
		out := append([]string(nil), have...)
		for _, v := range add {
			if !contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}, false)
}

// SetRecords makes recs the only values of their record sets, in one
// change batch, which Route 53 applies atomically.
func (p *Provider) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return p.modify(ctx, zone, recs, func(_, set []string) []string { return set }, false)
}

// DeleteRecords removes the values of recs from their record sets (the set
// is deleted when nothing is left; an empty value removes the whole set)
// and returns what was removed. Records that do not exist are ignored.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	return p.modify(ctx, zone, recs, func(have, del []string) []string {
		var out []string
		for _, v := range have {
			if !contains(del, v) && !contains(del, "") {
				out = append(out, v)
			}
		}
		return out
	}, true)
}

// GetRecords lists the zone's simple record sets (not aliases), one record
// per value.
func (p *Provider) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	hz, err := p.hostedZoneFor(ctx, p.zoneName(zone))
	if err != nil {
		return nil, err
	}
	var out []libdns.Record
	in := &r53.ListResourceRecordSetsInput{HostedZoneId: aws.String(hz.id)}
	for {
		res, err := p.client.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, p.redact(ctx, fmt.Errorf("route53: listing record sets of hosted zone %s: %w", hz.id, err))
		}
		for _, set := range res.ResourceRecordSets {
			out = append(out, fromSet(set, p.zoneName(zone))...)
		}
		if !res.IsTruncated {
			return out, nil
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = res.NextRecordName, res.NextRecordType, res.NextRecordIdentifier
	}
}

// modify groups recs by record set, computes each set's new values from
// its current ones, sends one change batch and waits for it. With
// deleting, the return value is what was removed; otherwise recs.
func (p *Provider) modify(ctx context.Context, zone string, recs []libdns.Record, next func(have, given []string) []string, deleting bool) ([]libdns.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	zoneName := p.zoneName(zone)
	sets, err := groupSets(zoneName, recs)
	if err != nil {
		return nil, err
	}
	hz, err := p.hostedZoneFor(ctx, sets[0].name)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if !inZone(s.name, hz.name) {
			return nil, fmt.Errorf("route53: %s is not in hosted zone %s (%s)", s.name, hz.name, hz.id)
		}
	}

	p.mu.Lock()
	var changes []types.Change
	var removed []libdns.Record
	for _, s := range sets {
		cur, err := p.current(ctx, hz.id, s.name, s.typ)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		var have []string
		ttl := s.ttl
		if cur != nil {
			have = values(cur)
			if deleting || ttl == 0 {
				ttl = aws.ToInt64(cur.TTL)
			}
		}
		if deleting && s.ttl != 0 && cur != nil && s.ttl != aws.ToInt64(cur.TTL) {
			continue // libdns: a given TTL must match too
		}
		want := next(have, s.values)
		if deleting {
			for _, v := range have {
				if !contains(want, v) {
					removed = append(removed, toRecord(s.name, s.typ, ttl, v, zoneName))
				}
			}
		}
		switch {
		case len(want) == 0 && cur == nil:
			// nothing to delete
		case len(want) == 0:
			changes = append(changes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: cur})
		case cur != nil && sameValues(have, want) && ttl == aws.ToInt64(cur.TTL):
			// already so
		default:
			changes = append(changes, types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: newSet(s.name, s.typ, ttl, want)})
		}
	}
	var changeID string
	if len(changes) > 0 {
		res, err := p.client.ChangeResourceRecordSets(ctx, &r53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(hz.id),
			ChangeBatch:  &types.ChangeBatch{Changes: changes, Comment: aws.String("gateway ACME DNS-01")},
		})
		if err != nil {
			p.mu.Unlock()
			return nil, p.redact(ctx, fmt.Errorf("route53: changing %s in hosted zone %s: %w", describe(changes), hz.id, err))
		}
		changeID = aws.ToString(res.ChangeInfo.Id)
		p.log.Debug("route53 change submitted", zap.String("hosted_zone_id", hz.id), zap.String("change_id", changeID), zap.String("changes", describe(changes)))
	}
	p.mu.Unlock()

	if changeID != "" {
		if err := p.waitInSync(ctx, changeID); err != nil {
			return nil, err
		}
	}
	if deleting {
		return removed, nil
	}
	return recs, nil
}

// current returns the record set (name, type) of the zone, or nil.
func (p *Provider) current(ctx context.Context, zoneID, name, typ string) (*types.ResourceRecordSet, error) {
	res, err := p.client.ListResourceRecordSets(ctx, &r53.ListResourceRecordSetsInput{
		HostedZoneId:    aws.String(zoneID),
		StartRecordName: aws.String(name),
		StartRecordType: types.RRType(typ),
		MaxItems:        aws.Int32(1),
	})
	if err != nil {
		return nil, p.redact(ctx, fmt.Errorf("route53: reading %s %s in hosted zone %s: %w", name, typ, zoneID, err))
	}
	for i := range res.ResourceRecordSets {
		s := &res.ResourceRecordSets[i]
		if canonical(unescapeName(aws.ToString(s.Name))) == name && string(s.Type) == typ && s.AliasTarget == nil {
			return s, nil
		}
	}
	return nil, nil
}

// waitInSync polls GetChange until the change is INSYNC or ctx ends.
func (p *Provider) waitInSync(ctx context.Context, id string) error {
	start := time.Now()
	for {
		res, err := p.client.GetChange(ctx, &r53.GetChangeInput{Id: aws.String(id)})
		if err != nil {
			return p.redact(ctx, fmt.Errorf("route53: waiting for change %s: %w", id, err))
		}
		if res.ChangeInfo != nil && res.ChangeInfo.Status == types.ChangeStatusInsync {
			p.log.Debug("route53 change in sync", zap.String("change_id", id), zap.Duration("waited", time.Since(start)))
			return nil
		}
		t := time.NewTimer(p.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("route53: change %s still PENDING after %s: %w", id, time.Since(start).Round(time.Second), ctx.Err())
		case <-t.C:
		}
	}
}

// zoneName is the zone record names are relative to: the caller's, else
// Config.Zone, else none (names are absolute).
func (p *Provider) zoneName(zone string) string {
	if zone != "" {
		return canonical(zone)
	}
	return p.zone
}

// hostedZoneFor returns the configured hosted zone, or the one whose name
// is the longest suffix of name (public zones before private ones, which
// a CA on the internet cannot query).
func (p *Provider) hostedZoneFor(ctx context.Context, name string) (hostedZone, error) {
	if p.hostedZoneID != "" {
		return hostedZone{id: p.hostedZoneID, name: p.zone}, nil
	}
	if name == "" {
		return hostedZone{}, errors.New("route53: no zone given, none configured and no record to find one from")
	}
	for cand := canonical(name); strings.Count(cand, ".") >= 2; cand = cand[strings.IndexByte(cand, '.')+1:] {
		p.mu.Lock()
		hz, ok := p.zones[cand]
		p.mu.Unlock()
		if ok {
			return hz, nil
		}
		res, err := p.client.ListHostedZonesByName(ctx, &r53.ListHostedZonesByNameInput{DNSName: aws.String(cand), MaxItems: aws.Int32(10)})
		if err != nil {
			return hostedZone{}, p.redact(ctx, fmt.Errorf("route53: finding the hosted zone of %s: %w", name, err))
		}
		var private *hostedZone
		for _, z := range res.HostedZones {
			if canonical(unescapeName(aws.ToString(z.Name))) != cand {
				continue
			}
			found := hostedZone{id: strings.TrimPrefix(aws.ToString(z.Id), "/hostedzone/"), name: cand}
			if z.Config != nil && z.Config.PrivateZone {
				if private == nil {
					private = &found
				}
				continue
			}
			private = nil
			p.remember(found)
			return found, nil
		}
		if private != nil {
			p.log.Warn("route53 hosted zone is private; a public CA cannot see its records", zap.String("zone", cand), zap.String("hosted_zone_id", private.id))
			p.remember(*private)
			return *private, nil
		}
	}
	return hostedZone{}, fmt.Errorf("route53: no hosted zone for %s in this account; create one, or set tls.acme.dns.hosted_zone_id", strings.TrimSuffix(name, "."))
}

func (p *Provider) remember(hz hostedZone) {
	p.mu.Lock()
	p.zones[hz.name] = hz
	p.mu.Unlock()
}

// redact keeps the credentials out of err's text. AWS answers a request
// whose signature does not match with a message quoting the canonical
// request it computed, session token included, and the SDK puts that
// message in its error, which certmagic and the gateway would log.
func (p *Provider) redact(ctx context.Context, err error) error {
	if err == nil || p.client.Options().Credentials == nil {
		return err
	}
	// The SDK caches credentials: this does not fetch them again.
	creds, cerr := p.client.Options().Credentials.Retrieve(context.WithoutCancel(ctx))
	if cerr != nil {
		return err
	}
	msg := err.Error()
	for _, secret := range []string{creds.SecretAccessKey, creds.SessionToken} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose text had credentials removed; Unwrap
// still reaches the SDK's error for errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
