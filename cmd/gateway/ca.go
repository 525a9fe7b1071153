package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
)

func newCACommand() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Internal certificate authority",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("ca needs a subcommand: root")}
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
			m, err := tlsmgr.New(loaded.TLS, loaded.Storage, zap.NewNop())
			if err != nil {
				return err
			}
			defer m.Close()
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
	ca.AddCommand(root)
	return ca
}

// loadCAConfig loads the configuration for `ca root`: only storage and the
// tls section matter there, so a configuration without sites is accepted.
func loadCAConfig(cmd *cobra.Command) (*configs.Loaded, error) {
	file, _ := cmd.Flags().GetString("config")
	return configs.Load(configs.Options{File: file, Flags: cmd.Flags(), CertificatesOnly: true})
}
