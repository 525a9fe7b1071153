package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/gateway-project/gateway/configs"
)

// The Windows service: `gateway service install` registers the binary with
// the service control manager to run as `gateway run --config <absolute
// path>`, started automatically and restarted after a crash; the service
// logs to <storage>/gateway.log and records starts, stops and failures in
// the Application event log. Stop (and system shutdown) drains as SIGTERM
// does; "paramchange" (sc control NAME paramchange) reloads as SIGHUP does.
// The code that talks to Windows is in service_windows.go; this file holds
// what does not depend on the operating system, tested on every platform.

// defaultServiceName is the service name unless --name says otherwise.
const defaultServiceName = "gateway"

// serviceNameFlag carries the service name in the service's registered
// command line, for its event log source. runService removes it before the
// command line reaches `run`.
const serviceNameFlag = "--service-name"

// serviceSpec is what install registers.
type serviceSpec struct {
	Name        string
	DisplayName string
	Description string
	Exe         string   // absolute path of the gateway binary
	Args        []string // its arguments: run --config FILE --service-name NAME
	Config      string   // absolute path of the configuration file
	LogFile     string   // where the service will log
}

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$`)

// checkServiceName refuses names the service manager or the event log
// would mangle (no slashes, spaces or control characters).
func checkServiceName(name string) error {
	if !serviceNameRE.MatchString(name) {
		return fmt.Errorf("--name %q: use 1-80 letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// serviceConfigPath is the configuration file a service will run with:
// --config, else $GATEWAY_CONFIG, made absolute (a service starts in
// System32, where a relative path means nothing). It must exist.
func serviceConfigPath(flag string, getenv func(string) string) (string, error) {
	p := flag
	if p == "" {
		p = getenv(configs.EnvConfigFile)
	}
	if p == "" {
		return "", errors.New("name the configuration file with --config (or " + configs.EnvConfigFile +
			"): a service does not start in your working directory, and the built-in defaults serve nothing")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("--config %s: %w", p, err)
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", fmt.Errorf("--config: %w", err)
	case st.IsDir():
		return "", fmt.Errorf("--config %s is a directory", abs)
	}
	return abs, nil
}

// serviceArgs is the command line the service runs: `run` with the
// absolute configuration path, and the service's name.
func serviceArgs(config, name string) []string {
	return []string{"run", "--config", config, serviceNameFlag, name}
}

// splitServiceArgs takes the service name out of a service's command line
// (serviceArgs), returning it (defaultServiceName when absent) and the rest
// for `run`.
func splitServiceArgs(args []string) (name string, rest []string) {
	name = defaultServiceName
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == serviceNameFlag && i+1 < len(args):
			name = args[i+1]
			i++
		case len(a) > len(serviceNameFlag)+1 && a[:len(serviceNameFlag)+1] == serviceNameFlag+"=":
			name = a[len(serviceNameFlag)+1:]
		default:
			rest = append(rest, a)
		}
	}
	return name, rest
}

// configFromArgs returns the value of --config (or -c) in a `run` command
// line, or "".
func configFromArgs(args []string) string {
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(args):
			return args[i+1]
		case len(a) > 9 && a[:9] == "--config=":
			return a[9:]
		}
	}
	return ""
}

// serviceLogFile is where a service running with cfg logs: the gateway's
// JSON log lines, under storage.
func serviceLogFile(cfg configs.Config) string {
	return filepath.Join(cfg.Storage, "gateway.log")
}

// newServiceSpec builds what install registers, from the command's flags.
func newServiceSpec(cmd *cobra.Command) (serviceSpec, error) {
	f := cmd.Flags()
	name, _ := f.GetString("name")
	if err := checkServiceName(name); err != nil {
		return serviceSpec{}, usageError{err}
	}
	flagConfig, _ := f.GetString("config")
	config, err := serviceConfigPath(flagConfig, os.Getenv)
	if err != nil {
		return serviceSpec{}, usageError{err}
	}
	// Refuse now what the service would refuse at every start.
	loaded, err := configs.Load(configs.Options{File: config})
	if err != nil {
		var ve *configs.ValidationError
		if errors.As(err, &ve) {
			printProblems(cmd.OutOrStdout(), ve)
			return serviceSpec{}, fmt.Errorf("configuration has %d problem(s)", len(ve.Problems))
		}
		return serviceSpec{}, err
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.Abs(exe)
	}
	if err != nil {
		return serviceSpec{}, fmt.Errorf("locating the gateway binary: %w", err)
	}
	display, _ := f.GetString("display-name")
	return serviceSpec{
		Name:        name,
		DisplayName: display,
		Description: "Encrypting reverse proxy: HTTPS in front of IIS and TLS for SQL Server (" + config + ")",
		Exe:         exe,
		Args:        serviceArgs(config, name),
		Config:      config,
		LogFile:     serviceLogFile(loaded.Config),
	}, nil
}

func newServiceCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "service",
		Short: "Install and control the gateway as a Windows service",
		Long: "service registers the gateway with the Windows service control manager, to run\n" +
			"`gateway run --config FILE` at boot and be restarted after a failure; stopping the\n" +
			"service drains like SIGTERM. Only on Windows: on Linux, install the systemd unit\n" +
			"configs/gateway.service (README: \"Operating the gateway\").",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("service needs a subcommand: install | uninstall | start | stop")}
		},
	}
	nameFlag := func(c *cobra.Command) {
		c.Flags().String("name", defaultServiceName, "service name")
	}
	install := &cobra.Command{
		Use:   "install",
		Short: "Register the service (automatic start, restart on failure)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := serviceSupported("install"); err != nil {
				return err
			}
			spec, err := newServiceSpec(cmd)
			if err != nil {
				return err
			}
			if err := installService(spec); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed service %s: %s %s\nlogs: %s and the Application event log\nstart it with: gateway service start --name %s\n",
				spec.Name, spec.Exe, joinArgs(spec.Args), spec.LogFile, spec.Name)
			return nil
		},
	}
	nameFlag(install)
	install.Flags().StringP("config", "c", "", "configuration file the service runs with (default: $"+configs.EnvConfigFile+")")
	install.Flags().String("display-name", "Gateway (HTTPS and SQL encryption)", "name shown in services.msc")

	control := func(use, short string, do func(name string, timeout time.Duration) error) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := serviceSupported(use); err != nil {
					return err
				}
				name, _ := cmd.Flags().GetString("name")
				if err := checkServiceName(name); err != nil {
					return usageError{err}
				}
				timeout, _ := cmd.Flags().GetDuration("timeout")
				if err := do(name, timeout); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "service %s: %s done\n", name, use)
				return nil
			},
		}
		nameFlag(c)
		c.Flags().Duration("timeout", 2*time.Minute, "how long to wait for the service to reach the state")
		return c
	}
	root.AddCommand(install,
		control("uninstall", "Stop (if running) and remove the service", uninstallService),
		control("start", "Start the service and wait until it runs", startService),
		control("stop", "Stop the service (it drains first) and wait until it has stopped", stopService))
	return root
}

func joinArgs(args []string) string {
	out := ""
	for i, a := range args {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%q", a)
	}
	return out
}
