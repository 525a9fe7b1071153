package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gateway-project/gateway/cmd/gateway/internal/audit"
	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
)

// exitAuditFailed is `gateway audit`'s exit code when a check failed.
const exitAuditFailed = 3

// auditFailed is the error of an audit whose report has failed checks.
type auditFailed struct{ n int }

func (e auditFailed) Error() string { return fmt.Sprintf("audit: %d check(s) failed", e.n) }

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Write an encryption-in-transit report for an auditor (HTML and JSON)",
		Long: "audit checks, from outside, every listener and upstream of the configuration,\n" +
			"asks SQL Server itself through sql[].audit logins, and asks the running gateway\n" +
			"(admin.listen) what it saw over --since. It writes DIR/audit.html (one page,\n" +
			"no external assets, prints on A4) and DIR/audit.json.\n\n" +
			"Exit codes: 0 every check passed, 3 a check failed, 1 the audit could not run.",
		Args: cobra.NoArgs,
		RunE: runAudit,
	}
	addConfigFlags(cmd)
	cmd.Flags().String("out", ".", "directory for audit.html and audit.json")
	cmd.Flags().Duration("since", 24*time.Hour, "span of the running gateway's traffic to report (at most 25h)")
	cmd.Flags().StringSlice("trust", nil, "PEM files of roots the gateway's clients trust besides the system's and the internal CA's (an enterprise CA that issued tls.certificates)")
	return cmd
}

func runAudit(cmd *cobra.Command, _ []string) error {
	loaded, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	out, _ := cmd.Flags().GetString("out")
	since, _ := cmd.Flags().GetDuration("since")
	roots, err := auditRoots(cmd.Context(), loaded)
	if err != nil {
		return err
	}
	trust, _ := cmd.Flags().GetStringSlice("trust")
	for _, f := range trust {
		p, err := os.ReadFile(f)
		if err != nil {
			return usageError{fmt.Errorf("--trust: %w", err)}
		}
		certs := parsePEMCerts(p)
		if len(certs) == 0 {
			return usageError{fmt.Errorf("--trust %s: no PEM certificate in it", f)}
		}
		roots = append(roots, certs...)
	}
	r, err := audit.Run(cmd.Context(), audit.Options{
		Config: loaded.Config, ConfigFile: loaded.Source, Since: since, Roots: roots, Getenv: os.Getenv,
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := audit.WriteFiles(out, r); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	printAuditSummary(cmd.OutOrStdout(), r, out)
	if r.Summary.Fail > 0 {
		return auditFailed{r.Summary.Fail}
	}
	return nil
}

// auditRoots are the roots the gateway's own certificates are verified
// against besides the system's: the internal CA's (read from storage, when
// the gateway has created it) and tls.acme.ca_root.
func auditRoots(ctx context.Context, l *configs.Loaded) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	if l.TLS.Issuer == configs.IssuerInternal {
		if _, err := os.Stat(l.Storage); err == nil || l.RedisStorage() {
			m, closeM, err := lifecycle.NewCertManager(ctx, &l.Config)
			if err != nil {
				return nil, fmt.Errorf("reading the internal CA from %s: %w", l.Storage, err)
			}
			p, err := m.RootPEM()
			closeM()
			if err != nil {
				return nil, err
			}
			roots = append(roots, parsePEMCerts(p)...)
		}
	}
	if f := l.TLS.ACME.CARoot; f != "" {
		p, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		roots = append(roots, parsePEMCerts(p)...)
	}
	return roots, nil
}

func parsePEMCerts(p []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}

func printAuditSummary(w io.Writer, r *audit.Report, dir string) {
	fmt.Fprintf(w, "audit %s: %d passed, %d failed, %d warnings, %d not measured\n",
		r.Verdict, r.Summary.Pass, r.Summary.Fail, r.Summary.Warn, r.Summary.NotRun)
	for _, c := range r.Checks {
		if c.Verdict == audit.Fail || c.Verdict == audit.Warn {
			fmt.Fprintf(w, "  %-4s %s (%s): %s\n", c.Verdict, c.Title, c.Subject, c.Finding)
			if c.Fix != "" {
				fmt.Fprintf(w, "       to change: %s\n", c.Fix)
			}
		}
	}
	fmt.Fprintf(w, "report: %s, %s\n", filepath.Join(dir, "audit.html"), filepath.Join(dir, "audit.json"))
}
