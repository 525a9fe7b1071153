package tlsmgr

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/internal/testpki"
)

func TestPlanSources(t *testing.T) {
	ca := newTestCA(t, "Plan Test CA")
	dir := t.TempDir()
	good := writePair(t, dir, "good", ca.MustIssue(t, testpki.Options{}, "op.test", "*.wild.test"))
	expired := writePair(t, dir, "expired", ca.MustIssue(t, testpki.Options{NotAfter: time.Now().Add(-time.Hour)}, "old.test"))
	missing := configs.CertificateFile{CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key")}
	acme := configs.TLS{Issuer: configs.IssuerACME, ACME: configs.ACME{CA: "https://acme.test/directory"}}

	tests := []struct {
		name     string
		cfg      configs.TLS
		names    []string
		want     map[string]string // name -> issuer
		problems []string          // keys
	}{
		{"internal with an operator certificate",
			withCerts(internalConfig(), good), []string{"op.test", "a.wild.test", "app.test"},
			map[string]string{"op.test": IssuerOperator, "a.wild.test": IssuerOperator, "app.test": string(configs.IssuerInternal)}, nil},
		{"acme",
			acme, []string{"app.test"},
			map[string]string{"app.test": string(configs.IssuerACME)}, nil},
		{"none covers everything",
			noneConfig(good), []string{"op.test"},
			map[string]string{"op.test": IssuerOperator}, nil},
		{"none leaves a name uncovered",
			noneConfig(good), []string{"op.test", "app.test"},
			map[string]string{"op.test": IssuerOperator, "app.test": ""}, []string{"tls.certificates"}},
		{"unreadable file",
			withCerts(internalConfig(), good, missing), []string{"op.test"},
			map[string]string{"op.test": IssuerOperator}, []string{"tls.certificates[1].cert_file"}},
		{"expired certificate",
			withCerts(internalConfig(), expired), []string{"old.test"},
			map[string]string{"old.test": IssuerOperator}, []string{"tls.certificates[0].cert_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanSources(tc.cfg, tc.names)
			gotIssuers := map[string]string{}
			for _, s := range got {
				gotIssuers[s.Name] = s.Issuer
				if s.Source == "" {
					t.Errorf("%s: empty source", s.Name)
				}
			}
			if len(gotIssuers) != len(tc.want) {
				t.Errorf("sources %v, want %v", gotIssuers, tc.want)
			}
			for n, iss := range tc.want {
				if gotIssuers[n] != iss {
					t.Errorf("%s: issuer %q, want %q", n, gotIssuers[n], iss)
				}
			}
			var keys []string
			var pe *PlanError
			if errors.As(err, &pe) {
				for _, p := range pe.Problems {
					keys = append(keys, p.Key)
				}
			} else if err != nil {
				t.Fatalf("error %v is not a *PlanError", err)
			}
			if !slices.Equal(keys, tc.problems) {
				t.Errorf("problems %v (%v), want keys %v", keys, err, tc.problems)
			}
		})
	}
}

func TestPlanSourcesText(t *testing.T) {
	ca := newTestCA(t, "Plan Test CA")
	l := ca.MustIssue(t, testpki.Options{}, "op.test")
	f := writePair(t, t.TempDir(), "op", l)
	got, err := PlanSources(withCerts(internalConfig(), f), []string{"op.test", "app.test"})
	if err != nil {
		t.Fatal(err)
	}
	want := []NameSource{
		{Name: "op.test", Issuer: IssuerOperator, Source: "operator certificate " + f.CertFile + " (expires " + l.Leaf.NotAfter.UTC().Format(time.DateOnly) + ")", NotAfter: l.Leaf.NotAfter},
		{Name: "app.test", Issuer: string(configs.IssuerInternal), Source: `internal CA "Test Gateway CA"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PlanSources = %+v\nwant %+v", got, want)
	}
}

func TestPlanSourcesWrongPFXPassword(t *testing.T) {
	ca := newTestCA(t, "Plan Test CA")
	dir := t.TempDir()
	path := exportPFX(t, dir, ca.MustIssue(t, testpki.Options{}, "sql.test"), ca, "right")
	t.Setenv("TLSMGR_PLAN_PFX_PASSWORD", "wrong")
	cfg := withCerts(internalConfig(), configs.CertificateFile{PFXFile: path, PFXPasswordEnv: "TLSMGR_PLAN_PFX_PASSWORD"})
	_, err := PlanSources(cfg, []string{"sql.test"})
	var pe *PlanError
	if !errors.As(err, &pe) || !errors.Is(err, ErrIncorrectPassword) {
		t.Fatalf("error %v, want a *PlanError matching ErrIncorrectPassword", err)
	}
	p := pe.Problems[0]
	if p.Key != "tls.certificates[0].pfx_file" || !strings.Contains(p.Message, path) {
		t.Errorf("problem %q does not name the key and the file", p)
	}
}

func TestPlanSourcesWritesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := PlanSources(internalConfig(), []string{"app.test"}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("PlanSources wrote %v", entries)
	}
}

func withCerts(cfg configs.TLS, certs ...configs.CertificateFile) configs.TLS {
	cfg.Certificates = certs
	return cfg
}
