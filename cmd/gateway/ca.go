package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
)

func newCACommand() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Internal certificate authority",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("ca needs a subcommand: root or issue")}
		},
	}
	root := &cobra.Command{
		Use:   "root",
		Short: "Print (or write) the internal CA root certificate PEM",
		Long: "root prints the internal CA's root certificate, for installing into client\n" +
			"trust stores. The CA is created in the storage directory if it does not exist yet.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadCAConfig(cmd)
			if err != nil {
				return err
			}
			if loaded.TLS.Issuer != configs.IssuerInternal {
				return fmt.Errorf("tls.issuer is %q: this configuration does not use the internal CA", loaded.TLS.Issuer)
			}
			m, closeM, err := lifecycle.NewCertManager(cmd.Context(), &loaded.Config)
			if err != nil {
				return err
			}
			defer closeM()
			pem, err := m.RootPEM()
			if err != nil {
				return err
			}
			out, _ := cmd.Flags().GetString("out")
			if out == "" {
				_, err = cmd.OutOrStdout().Write(pem)
				return err
			}
			if err := os.WriteFile(out, pem, 0o644); err != nil {
				return fmt.Errorf("writing root certificate: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", out)
			return nil
		},
	}
	addConfigFlags(root)
	root.Flags().StringP("out", "o", "", "write the PEM to this file instead of standard output")
	ca.AddCommand(root, newCAIssueCommand())
	return ca
}

// defaultUpstreamDays is the lifetime `ca issue` asks for by default.
const defaultUpstreamDays = 365

func newCAIssueCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issue NAME... --out FILE.pfx --password-env VAR",
		Short: "Issue a certificate for an upstream SQL Server or IIS from the internal CA, as a PFX",
		Long: "issue signs a server certificate for the names given (DNS names or IP addresses) with the\n" +
			"internal CA in storage (created first if it does not exist, as `gateway run` would) and\n" +
			"writes it as a password-protected PKCS#12 file with its chain, for SQL Server Configuration\n" +
			"Manager or IIS to import. The gateway then verifies that upstream with ca_file set to the\n" +
			"internal root (`gateway ca root`, or --root-out). The password is read from the environment\n" +
			"variable named by --password-env; a PFX without a password is refused. `gateway check` warns\n" +
			"when a certificate issued this way expires within 30 days.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			out, _ := cmd.Flags().GetString("out")
			pwEnv, _ := cmd.Flags().GetString("password-env")
			days, _ := cmd.Flags().GetInt("days")
			aes, _ := cmd.Flags().GetBool("aes")
			rootOut, _ := cmd.Flags().GetString("root-out")
			switch {
			case out == "":
				return usageError{fmt.Errorf("--out FILE.pfx is required")}
			case pwEnv == "":
				return usageError{fmt.Errorf("--password-env VAR is required: the PFX holds the private key and is always password-protected")}
			case days < 1 || days > 398:
				return usageError{fmt.Errorf("--days %d: use 1-398 (clients reject longer-lived server certificates)", days)}
			}
			password := os.Getenv(pwEnv)
			if password == "" {
				return fmt.Errorf("environment variable %s is empty or not set; export the PFX password in it", pwEnv)
			}
			loaded, err := loadCAConfig(cmd)
			if err != nil {
				return err
			}
			m, closeM, err := lifecycle.NewCertManager(cmd.Context(), &loaded.Config)
			if err != nil {
				return err
			}
			defer closeM()
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			c, err := m.IssueUpstream(ctx, names, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			pfx, err := c.PFX(password, aes)
			if err != nil {
				return err
			}
			if err := writePrivateFile(out, pfx); err != nil {
				return fmt.Errorf("writing %s: %w", out, err)
			}
			if err := m.RecordUpstream(ctx, c, out); err != nil {
				return err
			}
			if rootOut != "" {
				if err := os.WriteFile(rootOut, c.RootPEM(), 0o644); err != nil {
					return fmt.Errorf("writing root certificate: %w", err)
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: %s, valid until %s\n", out, strings.Join(c.Leaf.DNSNames, ", ")+ipList(c), c.Leaf.NotAfter.UTC().Format(time.RFC3339))
			if asked := time.Now().Add(time.Duration(days) * 24 * time.Hour); c.Leaf.NotAfter.Before(asked.Add(-time.Hour)) {
				fmt.Fprintf(w, "note: %d days were asked; the internal CA's intermediate expires first, so issue again before %s\n", days, c.Leaf.NotAfter.UTC().Format(time.DateOnly))
			}
			fmt.Fprintf(w, "sha256 %s (pin_sha256)\n", c.SHA256())
			if rootOut != "" {
				fmt.Fprintf(w, "wrote %s: the internal root, for the upstream's ca_file\n", rootOut)
			}
			return nil
		},
	}
	addConfigFlags(cmd)
	cmd.Flags().StringP("out", "o", "", "the PFX file to write (required)")
	cmd.Flags().String("password-env", "", "name of the environment variable holding the PFX password (required)")
	cmd.Flags().Int("days", defaultUpstreamDays, "lifetime in days (1-398; never past the internal intermediate's expiry)")
	cmd.Flags().Bool("aes", false, "encrypt with AES-256 (Windows Server 2019 and later) instead of 3DES (Windows Server 2016)")
	cmd.Flags().String("root-out", "", "also write the internal root certificate PEM to this file")
	return cmd
}

func ipList(c *tlsmgr.UpstreamCertificate) string {
	var out string
	for i, ip := range c.Leaf.IPAddresses {
		if i > 0 || len(c.Leaf.DNSNames) > 0 {
			out += ", "
		}
		out += ip.String()
	}
	return out
}

// writePrivateFile writes data readable by its owner only, through a
// temporary file renamed into place, so no reader sees half a key.
func writePrivateFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gateway-pfx-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadCAConfig loads the configuration for `ca root` and `ca issue`: only storage and the
// tls section matter there, so a configuration without sites is accepted.
func loadCAConfig(cmd *cobra.Command) (*configs.Loaded, error) {
	file, _ := cmd.Flags().GetString("config")
	return configs.Load(configs.Options{File: file, Flags: cmd.Flags(), CertificatesOnly: true})
}
