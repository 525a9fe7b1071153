package tlsmgr

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gateway-project/gateway/configs"
)

// NameSource says where the certificate for one name will come from.
type NameSource struct {
	Name string `json:"name"`
	// Issuer is "operator", "internal" or "acme"; "" when nothing covers
	// the name (issuer none).
	Issuer string `json:"issuer"`
	// Source is for people: `operator certificate FILE (expires DATE)`,
	// `internal CA "NAME"` or `ACME URL`; PlanSourcesIn says more about
	// issuer certificates (stored and when they expire, or to be obtained).
	Source string `json:"source"`
	// NotAfter is when the certificate expires, when known: always for
	// operator certificates, and for issuer certificates PlanSourcesIn
	// found in storage. Zero otherwise.
	NotAfter time.Time `json:"not_after,omitzero"`
	// Challenges are the ACME challenge types that will be tried for the
	// name, in order (Challenges); empty unless the issuer is acme.
	Challenges []string `json:"challenges,omitempty"`
}

// PlanError lists every problem PlanSources found. Each Problem names its
// config key; errors.Is and errors.As reach the underlying errors (for
// example ErrIncorrectPassword).
type PlanError struct {
	Problems []configs.Problem
	errs     []error
}

func (e *PlanError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (e *PlanError) Unwrap() []error { return e.errs }

func (e *PlanError) add(key string, err error) {
	e.Problems = append(e.Problems, configs.Problem{Key: key, Message: err.Error()})
	e.errs = append(e.errs, err)
}

// PlanSources says, without network access or writing anything, where each
// name's certificate will come from. It loads the operator certificates (PFX
// passwords from their environment variables) and returns, with the sources
// it could determine, a *PlanError listing: operator files that fail to load
// or have expired; with issuer none, names no operator certificate covers;
// with issuer acme, names no enabled challenge can validate (Challenges).
func PlanSources(cfg configs.TLS, names []string) ([]NameSource, error) {
	return PlanSourcesIn(cfg, "", names)
}

// PlanSourcesIn is PlanSources that also looks, read-only, in the storage
// directory for certificates an earlier run obtained from the issuer: their
// Source says when they expire, and a name without one says it "will be
// obtained from" the issuer. An empty storageDir looks nowhere.
func PlanSourcesIn(cfg configs.TLS, storageDir string, names []string) ([]NameSource, error) {
	var pe PlanError
	now := time.Now()
	loaded := make([]*operatorCert, 0, len(cfg.Certificates))
	for i, f := range cfg.Certificates {
		c, err := loadOperatorCert(i, f)
		if err != nil {
			pe.add(certKey(i, f), err)
			continue
		}
		if na := c.cert.Leaf.NotAfter; !now.Before(na) {
			pe.add(certKey(i, f), fmt.Errorf("%s: certificate expired on %s; replace it", sourceOf(f), na.UTC().Format(time.DateOnly)))
		}
		loaded = append(loaded, c)
	}
	ops := newOperatorSet(loaded)

	var out []NameSource
	for _, n := range normalizeNames(names) {
		if c := ops.lookup(n); c != nil {
			out = append(out, NameSource{
				Name:     n,
				Issuer:   IssuerOperator,
				Source:   fmt.Sprintf("operator certificate %s (expires %s)", sourceOf(c.file), c.cert.Leaf.NotAfter.UTC().Format(time.DateOnly)),
				NotAfter: c.cert.Leaf.NotAfter,
			})
			continue
		}
		switch cfg.Issuer {
		case configs.IssuerInternal, configs.IssuerACME:
			ns := NameSource{Name: n, Issuer: string(cfg.Issuer), Source: issuerSource(cfg)}
			if cfg.Issuer == configs.IssuerACME {
				var problem string
				if ns.Challenges, problem = Challenges(cfg.ACME, n); problem != "" {
					pe.add("tls.acme", errors.New(problem))
				}
			}
			if storageDir != "" {
				if leaf := storedLeaf(cfg, storageDir, n); leaf != nil {
					ns.NotAfter = leaf.NotAfter
					ns.Source = fmt.Sprintf("%s (in storage, expires %s; renewed automatically)", ns.Source, leaf.NotAfter.UTC().Format(time.DateOnly))
				} else {
					ns.Source = "will be obtained from " + ns.Source + " at start"
				}
			}
			out = append(out, ns)
		default:
			out = append(out, NameSource{Name: n, Source: "no certificate"})
			pe.add("tls.certificates", fmt.Errorf("no operator certificate covers %s and tls.issuer is %q: add a certificate for it, or set tls.issuer to internal or acme", n, cfg.Issuer))
		}
	}
	if len(pe.Problems) > 0 {
		return out, &pe
	}
	return out, nil
}

// storedLeaf reads the leaf certmagic stored for name under the configured
// issuer, or returns nil when there is none or it cannot be read. Nothing is
// written and no lock is taken.
func storedLeaf(cfg configs.TLS, storageDir, name string) *x509.Certificate {
	var issuerKey string
	switch cfg.Issuer {
	case configs.IssuerInternal:
		issuerKey = (&internalCA{name: cfg.Internal.CAName}).IssuerKey()
	case configs.IssuerACME:
		issuerKey = (&certmagic.ACMEIssuer{CA: cfg.ACME.CA}).IssuerKey()
	default:
		return nil
	}
	key := certmagic.StorageKeys.SiteCert(issuerKey, name)
	data, err := os.ReadFile(filepath.Join(storageDir, filepath.FromSlash(key)))
	if err != nil {
		return nil
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return leaf
}
