package main

import (
	"github.com/spf13/cobra"

	"github.com/gateway-project/gateway/configs"
)

// addConfigFlags registers --config and the flags that override config keys
// (configs.FlagKeys); a flag given on the command line beats env and file.
func addConfigFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringP("config", "c", "", "config file (default: $"+configs.EnvConfigFile+", else built-in defaults)")
	f.String("log-level", "", "log.level: debug | info | warn | error")
	f.String("log-format", "", "log.format: json | console")
	f.String("admin-listen", "", "admin.listen address")
	f.String("storage", "", "storage directory")
	f.String("http-listen", "", "http.listen address")
	f.String("redirect-listen", "", "http.redirect_listen address")
}

// loadConfig loads the configuration named by the command's flags.
func loadConfig(cmd *cobra.Command) (*configs.Loaded, error) {
	file, _ := cmd.Flags().GetString("config")
	return configs.Load(configs.Options{File: file, Flags: cmd.Flags()})
}
