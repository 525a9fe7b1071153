package tlsmgr

import (
	"fmt"
	"strings"
	"time"

	"github.com/gateway-project/gateway/configs"
)

// NameSource says where the certificate for one name will come from.
type NameSource struct {
	Name string `json:"name"`
	// Issuer is "operator", "internal" or "acme"; "" when nothing covers
	// the name (issuer none).
	Issuer string `json:"issuer"`
	// Source is for people: `operator certificate FILE (expires DATE)`,
	// `internal CA "NAME"` or `ACME URL`.
	Source string `json:"source"`
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
// or have expired, and, with issuer none, names no operator certificate
// covers.
func PlanSources(cfg configs.TLS, names []string) ([]NameSource, error) {
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
				Name:   n,
				Issuer: IssuerOperator,
				Source: fmt.Sprintf("operator certificate %s (expires %s)", sourceOf(c.file), c.cert.Leaf.NotAfter.UTC().Format(time.DateOnly)),
			})
			continue
		}
		switch cfg.Issuer {
		case configs.IssuerInternal, configs.IssuerACME:
			out = append(out, NameSource{Name: n, Issuer: cfg.Issuer, Source: issuerSource(cfg)})
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
