package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes of the CLI contract (docs/architecture.md, "CLI contract").
const (
	exitOK      = 0
	exitFailure = 1 // bad config or runtime failure
	exitUsage   = 2
)

// usageError marks a command line the gateway cannot parse.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ue usageError
	var af auditFailed
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &af):
		return exitAuditFailed
	default:
		return exitFailure
	}
}

// run executes one command line; ctx ends on SIGINT/SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && cmd != nil && isUsageMistake(err) {
		return usageError{err}
	}
	return err
}

// isUsageMistake recognises cobra's own argument errors, which it does not type.
func isUsageMistake(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires ", "invalid argument"} {
		if len(msg) >= len(prefix) && msg[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "gateway",
		Short: "Encrypting reverse proxy for IIS and SQL Server",
		Long: "gateway puts real encryption in transit in front of legacy Windows stacks:\n" +
			"HTTPS in front of IIS, and a TDS tunnel in front of SQL Server that refuses\n" +
			"clear-text logins and verifies the server it talks to.\n\n" +
			"Without a command it runs (gateway run).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
	}
	runCmd := newRunCommand()
	root.RunE = runCmd.RunE
	addConfigFlags(root)
	root.AddCommand(runCmd, newCheckCommand(), newAuditCommand(), newDemoCommand(), newCACommand(), newVersionCommand(), newServiceCommand())
	return root
}
