package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultYAML is the embedded default configuration and key reference.
//
//go:embed gateway.yaml
var DefaultYAML []byte

// EnvPrefix prefixes every environment variable that sets a key.
const EnvPrefix = "GATEWAY"

// EnvConfigFile names the config file when --config is not given.
const EnvConfigFile = "GATEWAY_CONFIG"

// FlagKeys maps command-line flag names to the config keys they set.
// Commands register these flags; Load binds the ones present in the flag set.
var FlagKeys = map[string]string{
	"log-level":       "log.level",
	"log-format":      "log.format",
	"admin-listen":    "admin.listen",
	"storage":         "storage",
	"http-listen":     "http.listen",
	"redirect-listen": "http.redirect_listen",
}

// Options says where Load finds configuration beyond the embedded defaults.
type Options struct {
	// File is the YAML file to read. Empty means the GATEWAY_CONFIG
	// environment variable, and when that is empty too, defaults only.
	File string
	// Flags, if non-nil, overrides keys with the flags named in FlagKeys that
	// were set on the command line.
	Flags *pflag.FlagSet
	// CertificatesOnly accepts a configuration with nothing to serve, for
	// commands that only use storage and the tls section (`gateway ca root`).
	CertificatesOnly bool
}

// Loaded is a validated configuration plus where it came from.
type Loaded struct {
	Config
	// Source is the file read, or "" for the embedded defaults alone.
	Source string
}

// Load reads, merges, decodes and validates the configuration. A file that
// does not exist, unknown keys and values of the wrong type are errors, as is
// every validation problem (returned together as a *ValidationError).
func Load(opts Options) (*Loaded, error) {
	file := opts.File
	if file == "" {
		file = os.Getenv(EnvConfigFile)
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(DefaultYAML)); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	baseDir := ""
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: parsing YAML: %w", file, err)
		}
		baseDir = filepath.Dir(file)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if opts.Flags != nil {
		for name, key := range FlagKeys {
			if f := opts.Flags.Lookup(name); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, fmt.Errorf("binding flag --%s: %w", name, err)
				}
			}
		}
	}
	if err := applyListDefaults(v); err != nil {
		return nil, err
	}

	var cfg Config
	decodeErr := v.UnmarshalExact(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			// The enumerated settings (enums.go) reject unknown values here,
			// so the problem names the key.
			mapstructure.TextUnmarshallerHookFunc(),
		)
	})
	cfg.resolvePaths(baseDir)
	// Validate even what decoded only in part, so that one run lists every
	// problem: mapstructure fills every field it can despite errors.
	validateErr := cfg.validate(!opts.CertificatesOnly)
	if decodeErr != nil {
		return nil, mergeProblems(decodeError(file, decodeErr), validateErr)
	}
	if validateErr != nil {
		return nil, validateErr
	}
	return &Loaded{Config: cfg, Source: file}, nil
}

// mergeProblems appends the validation problems whose keys the decode error
// does not already name (a value that failed to decode is also zero, and
// reporting it twice would mislead).
func mergeProblems(decodeErr, validateErr error) error {
	var de, ve *ValidationError
	if !errors.As(decodeErr, &de) {
		return decodeErr
	}
	if errors.As(validateErr, &ve) {
		named := map[string]bool{}
		for _, p := range de.Problems {
			named[p.Key] = true
		}
		for _, p := range ve.Problems {
			if !named[p.Key] {
				de.Problems = append(de.Problems, p)
			}
		}
	}
	return de
}

// listDefaults are the defaults of keys inside list entries, which viper's
// own defaults cannot reach.
var listDefaults = map[string]map[string]any{
	"http.sites": {
		"hsts_max_age":                "8760h",
		"preserve_host":               true,
		"windows_auth":                true,
		"http2":                       HTTP2Auto,
		"rewrite_location":            true,
		"cookie_secure":               true,
		"cookie_http_only":            false,
		"cookie_same_site":            "",
		"upgrade_insecure_requests":   false,
		"max_request_body":            0,
		"load_balancing":              LoadBalancingRoundRobin,
		"sticky.cookie":               "",
		"health_check.path":           "",
		"health_check.interval":       "10s",
		"health_check.timeout":        "5s",
		"health_check.expect_status":  200,
		"passive_health.max_fails":    3,
		"passive_health.fail_timeout": "30s",
		"upstream_tls.sni_from_host":  false,
		"client_auth.mode":            ClientAuthNone,
		"client_auth.ca_file":         "",
		"access_log_query":            false,
	},
	"sql": {
		"client_encryption":      ClientEncryptionRequired,
		"instance":               "",
		"proxy_protocol.enabled": false,
		"proxy_protocol.trusted": []any{},
		"audit.user":             "",
		"audit.password_env":     "",
		"upstream.encryption":    UpstreamEncryptionRequired,
		"upstream.routing":       RoutingRefuse,
		"max_connections":        DefaultSQLMaxConnections,
	},
}

func applyListDefaults(v *viper.Viper) error {
	for listKey, defaults := range listDefaults {
		raw := v.Get(listKey)
		if raw == nil {
			continue
		}
		items, ok := raw.([]any)
		if !ok {
			return &ValidationError{Problems: []Problem{{Key: listKey, Message: "must be a list"}}}
		}
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return &ValidationError{Problems: []Problem{{Key: fmt.Sprintf("%s[%d]", listKey, i), Message: "must be a mapping of keys to values"}}}
			}
			for path, def := range defaults {
				setIfAbsent(m, strings.Split(path, "."), def)
			}
		}
		v.Set(listKey, items)
	}
	return nil
}

func setIfAbsent(m map[string]any, path []string, value any) {
	if len(path) == 1 {
		if _, ok := m[path[0]]; !ok {
			m[path[0]] = value
		}
		return
	}
	child, ok := m[path[0]].(map[string]any)
	if !ok {
		if _, present := m[path[0]]; present {
			return // wrong type: decoding reports it
		}
		child = map[string]any{}
		m[path[0]] = child
	}
	setIfAbsent(child, path[1:], value)
}

// decodeError turns mapstructure's report into key-named problems.
func decodeError(file string, err error) error {
	src := "config"
	if file != "" {
		src = file
	}
	var problems []Problem
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed due to") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		problems = append(problems, describeDecodeProblem(line))
	}
	if len(problems) == 0 {
		return fmt.Errorf("%s: %w", src, err)
	}
	return &ValidationError{Source: src, Problems: problems}
}

// describeDecodeProblem rewrites one mapstructure message, e.g.
// "'tls' has invalid keys: isuer", into a Problem naming the key.
func describeDecodeProblem(line string) Problem {
	if i := strings.Index(line, " has invalid keys: "); i > 0 {
		parent := strings.Trim(line[:i], "'")
		keys := strings.Split(line[i+len(" has invalid keys: "):], ", ")
		for j, k := range keys {
			if parent != "" {
				keys[j] = parent + "." + k
			}
		}
		return Problem{Key: strings.Join(keys, ", "), Message: "unknown key; check the spelling against configs/gateway.yaml"}
	}
	if strings.HasPrefix(line, "'") {
		if end := strings.Index(line[1:], "'"); end >= 0 {
			key := line[1 : end+1]
			msg := strings.TrimSpace(line[end+2:])
			if strings.Contains(msg, "invalid duration") || strings.Contains(msg, "time.Duration") {
				msg = "not a duration; write e.g. 30s, 15m or 168h (" + msg + ")"
			}
			return Problem{Key: key, Message: msg}
		}
	}
	return Problem{Key: "config", Message: line}
}

// resolvePaths makes relative file paths relative to the config file's
// directory, so a service started from another working directory (Windows
// services start in System32) still finds its files.
func (c *Config) resolvePaths(baseDir string) {
	if baseDir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	if !c.RedisStorage() {
		abs(&c.Storage)
	}
	abs(&c.StorageRedis.CAFile)
	abs(&c.TLS.ACME.CARoot)
	for i := range c.TLS.Certificates {
		cf := &c.TLS.Certificates[i]
		abs(&cf.CertFile)
		abs(&cf.KeyFile)
		abs(&cf.PFXFile)
	}
	for i := range c.HTTP.Sites {
		abs(&c.HTTP.Sites[i].UpstreamTLS.CAFile)
		abs(&c.HTTP.Sites[i].ClientAuth.CAFile)
	}
	for i := range c.SQL {
		abs(&c.SQL[i].Upstream.CAFile)
	}
}

// IsNotExist reports whether err means the config file named does not exist.
func IsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

// Defaults returns the embedded default configuration, not validated: a base
// for callers that build a configuration in code (such as `gateway demo`),
// which should call Validate once they have filled it in.
func Defaults() (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	var cfg Config
	if err := v.ReadConfig(bytes.NewReader(DefaultYAML)); err != nil {
		return cfg, fmt.Errorf("embedded defaults: %w", err)
	}
	if err := v.UnmarshalExact(&cfg); err != nil {
		return cfg, fmt.Errorf("embedded defaults: %w", err)
	}
	return cfg, nil
}

// Names returns every host name the gateway needs a certificate for: each
// site's hosts and each SQL listener's hostname, without duplicates, in order.
func (c *Config) Names() []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		k := strings.ToLower(n)
		if n != "" && !seen[k] {
			seen[k] = true
			names = append(names, n)
		}
	}
	for _, s := range c.HTTP.Sites {
		for _, h := range s.Hosts {
			add(h)
		}
	}
	for _, l := range c.SQL {
		add(l.Hostname)
	}
	return names
}

// DefaultServerName is the name whose certificate is presented when a client
// sends no SNI or an unknown one: the first site's first host, else the first
// SQL listener's hostname.
func (c *Config) DefaultServerName() string {
	if len(c.HTTP.Sites) > 0 && len(c.HTTP.Sites[0].Hosts) > 0 {
		return c.HTTP.Sites[0].Hosts[0]
	}
	if len(c.SQL) > 0 {
		return c.SQL[0].Hostname
	}
	return ""
}
