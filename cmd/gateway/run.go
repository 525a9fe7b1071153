package main

import (
	"os/signal"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
)

func newRunCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve (the default command)",
		Long: "run serves until SIGTERM or SIGINT, then drains (drain_timeout) and exits 0.\n" +
			"SIGHUP re-reads the configuration from the same file, environment and flags\n" +
			"and applies it without dropping a connection; an invalid one is refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loaded, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger, level, err := newLevelLogger(loaded.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { _ = logger.Sync() }()
			source := loaded.Source
			if source == "" {
				source = "built-in defaults"
			}
			logger.Info("starting gateway", zap.String("version", version), zap.String("config", source))
			// Catch SIGHUP before anything is ready: a SIGHUP that arrives
			// while starting is held and applied once the gateway is up,
			// instead of killing the process (its default action).
			hup := notifyHangup()
			g, err := lifecycle.Start(cmd.Context(), loaded.Config, logger, lifecycle.Options{
				Version:  version,
				Commit:   vcsCommit(),
				Load:     func() (*configs.Loaded, error) { return loadConfig(cmd) },
				Level:    &level,
				Notifier: notifierFrom(cmd.Context()),
			})
			if err != nil {
				signal.Stop(hup)
				return err
			}
			stopHUP := watchHangup(cmd.Context(), logger, hup, g.Reload)
			defer stopHUP()
			return g.Wait()
		},
	}
	addConfigFlags(cmd)
	return cmd
}
