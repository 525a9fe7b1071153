package configs

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Problem is one invalid setting: the key, as a path such as
// "sql[0].upstream.address", and what is wrong with it and how to fix it.
type Problem struct {
	Key     string
	Message string
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	Source   string // file name, or "" for defaults/env/flags only
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

type problems []Problem

func (ps *problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// Validate checks every setting and returns a *ValidationError listing all
// problems, or nil.
func (c *Config) Validate() error { return c.validate(true) }

// validate checks every setting; requireServe also demands something to
// serve (a site when http.listen is set).
func (c *Config) validate(requireServe bool) error {
	var ps problems
	c.validateGeneral(&ps)
	c.TLS.validate(&ps)
	c.HTTP.validate(&ps, requireServe)
	validateSQL(c.SQL, &ps)
	checkProxyProtocol(&ps, "http.proxy_protocol", c.HTTP.ProxyProtocol)
	for i, l := range c.SQL {
		checkProxyProtocol(&ps, fmt.Sprintf("sql[%d].proxy_protocol", i), l.ProxyProtocol)
	}
	c.SQLBrowser.validate(c.SQL, &ps)
	c.validateWildcards(&ps)
	if c.TLS.MinVersion == TLS13 {
		for i, l := range c.SQL {
			if l.ClientEncryption != ClientEncryptionStrict {
				ps.add(fmt.Sprintf("sql[%d].client_encryption", i),
					"is %q but tls.min_version is \"1.3\": TDS 7.x carries TLS 1.2 at most; use client_encryption: strict or tls.min_version: \"1.2\"", l.ClientEncryption)
			}
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

func (c *Config) validateGeneral(ps *problems) {
	checkEnum(ps, "log.level", c.Log.Level, logLevels)
	checkEnum(ps, "log.format", c.Log.Format, logFormats)
	if c.Admin.Listen != "" {
		checkListen(ps, "admin.listen", c.Admin.Listen)
	}
	if strings.TrimSpace(c.Storage) == "" {
		ps.add("storage", "must name a directory for certificates and keys, e.g. ./data, or redis://host:6379/0")
	} else {
		c.validateStorage(ps)
	}
	if c.DrainTimeout < 0 {
		ps.add("drain_timeout", "must not be negative (e.g. 30s)")
	}
	c.Runtime.validate(ps)
}

func (t *TLS) validate(ps *problems) {
	checkEnum(ps, "tls.issuer", t.Issuer, issuers)
	checkEnum(ps, "tls.min_version", t.MinVersion, tlsVersions)
	if t.Issuer == IssuerInternal {
		if strings.TrimSpace(t.Internal.CAName) == "" {
			ps.add("tls.internal.ca_name", "must not be empty")
		}
		switch lt := t.Internal.LeafLifetime; {
		case lt < time.Hour:
			ps.add("tls.internal.leaf_lifetime", "is %s; use at least 1h (e.g. 168h)", lt)
		case lt > 398*24*time.Hour:
			ps.add("tls.internal.leaf_lifetime", "is %s; clients reject leaves valid over 398 days, use at most 9552h", lt)
		}
	}
	if t.Issuer == IssuerACME {
		a := t.ACME
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			ps.add("tls.acme.ca", "must be the https:// URL of an ACME directory, got %q", a.CA)
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			ps.add("tls.acme.email", "%q is not an e-mail address", a.Email)
		}
		if a.DisableHTTPChallenge && a.DisableTLSALPNChallenge && !a.DNS.Enabled() {
			ps.add("tls.acme.disable_http_challenge", "and tls.acme.disable_tls_alpn_challenge are both true; keep at least one challenge enabled, or set tls.acme.dns.provider for DNS-01")
		}
		a.DNS.validate(ps)
		a.EAB.validate(ps)
		if a.CARoot != "" {
			checkFile(ps, "tls.acme.ca_root", a.CARoot)
		}
	}
	for i, cf := range t.Certificates {
		key := fmt.Sprintf("tls.certificates[%d]", i)
		pem := cf.CertFile != "" || cf.KeyFile != ""
		switch {
		case pem && cf.PFXFile != "":
			ps.add(key, "set either cert_file and key_file, or pfx_file, not both")
		case pem:
			if cf.CertFile == "" {
				ps.add(key+".cert_file", "missing; a PEM pair needs both cert_file and key_file")
			} else {
				checkFile(ps, key+".cert_file", cf.CertFile)
			}
			if cf.KeyFile == "" {
				ps.add(key+".key_file", "missing; a PEM pair needs both cert_file and key_file")
			} else {
				checkFile(ps, key+".key_file", cf.KeyFile)
			}
			if cf.PFXPasswordEnv != "" {
				ps.add(key+".pfx_password_env", "only applies to pfx_file")
			}
		case cf.PFXFile != "":
			checkFile(ps, key+".pfx_file", cf.PFXFile)
			if cf.PFXPasswordEnv != "" {
				if _, ok := os.LookupEnv(cf.PFXPasswordEnv); !ok {
					ps.add(key+".pfx_password_env", "environment variable %s is not set; export the PFX password in it", cf.PFXPasswordEnv)
				}
			}
		default:
			ps.add(key, "empty entry; set cert_file and key_file, or pfx_file")
		}
	}
}

func (h *HTTP) validate(ps *problems, requireServe bool) {
	if h.Listen != "" {
		checkListen(ps, "http.listen", h.Listen)
		if len(h.Sites) == 0 && requireServe {
			ps.add("http.sites", "no site configured; add one (see configs/examples/iis-front.yaml) or set http.listen to \"\" for a SQL-only gateway")
		}
	} else if len(h.Sites) > 0 {
		ps.add("http.listen", "is empty but http.sites has %d site(s); set a listen address such as \":443\"", len(h.Sites))
	}
	if h.RedirectListen != "" {
		checkListen(ps, "http.redirect_listen", h.RedirectListen)
		// Port 0 asks for any free port, so two such addresses never clash
		// (gateway demo and the tests use 127.0.0.1:0 for both).
		if h.RedirectListen == h.Listen && !strings.HasSuffix(h.Listen, ":0") {
			ps.add("http.redirect_listen", "is the same address as http.listen")
		}
	}
	seen := map[string]string{}
	for i, s := range h.Sites {
		key := fmt.Sprintf("http.sites[%d]", i)
		if len(s.Hosts) == 0 {
			ps.add(key+".hosts", "list at least one host name, e.g. [app.example.com]")
		}
		for j, host := range s.Hosts {
			hk := fmt.Sprintf("%s.hosts[%d]", key, j)
			if msg := checkHostName(host, true); msg != "" {
				ps.add(hk, "%s", msg)
				continue
			}
			lower := strings.ToLower(host)
			if prev, dup := seen[lower]; dup {
				ps.add(hk, "%q is already served by %s", host, prev)
			}
			seen[lower] = hk
		}
		if len(s.Upstreams) == 0 {
			ps.add(key+".upstreams", "list at least one upstream URL, e.g. [http://10.0.0.5:80]")
		}
		for j, up := range s.Upstreams {
			checkUpstreamURL(ps, fmt.Sprintf("%s.upstreams[%d]", key, j), up)
		}
		if s.HSTSMaxAge < 0 {
			ps.add(key+".hsts_max_age", "must not be negative; 0 disables HSTS")
		}
		s.validateExtras(ps, key)
	}
}

var sqlNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// instanceNameRE is SQL Server's rule for instance names: up to 16
// characters, letters, digits, '_', '$' and '#', starting with a letter or
// '_'.
var instanceNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$#]{0,15}$`)

func validateSQL(list []SQLListener, ps *problems) {
	names := map[string]int{}
	listens := map[string]int{}
	instances := map[string]int{}
	for i, l := range list {
		key := fmt.Sprintf("sql[%d]", i)
		switch {
		case l.Name == "":
			ps.add(key+".name", "missing; name each SQL listener (used in logs and metrics)")
		case !sqlNameRE.MatchString(l.Name):
			ps.add(key+".name", "%q: use letters, digits, '.', '_' and '-'", l.Name)
		default:
			if j, dup := names[l.Name]; dup {
				ps.add(key+".name", "%q is also the name of sql[%d]", l.Name, j)
			}
			names[l.Name] = i
		}
		if l.Listen == "" {
			ps.add(key+".listen", "missing; e.g. \":1433\"")
		} else if checkListen(ps, key+".listen", l.Listen) {
			// Port 0 asks for any free port: two such addresses never clash.
			if j, dup := listens[l.Listen]; dup && !strings.HasSuffix(l.Listen, ":0") {
				ps.add(key+".listen", "%s is also the address of sql[%d]", l.Listen, j)
			}
			listens[l.Listen] = i
		}
		if l.Hostname == "" {
			ps.add(key+".hostname", "missing; the name on the certificate SQL clients verify, e.g. sql.example.com")
		} else if msg := checkHostName(l.Hostname, true); msg != "" {
			ps.add(key+".hostname", "%s", msg)
		}
		checkEnum(ps, key+".client_encryption", l.ClientEncryption, clientEncryptions)
		if l.Instance != "" {
			upper := strings.ToUpper(l.Instance)
			switch {
			case !instanceNameRE.MatchString(l.Instance):
				ps.add(key+".instance", "%q: an instance name has 1-16 characters (letters, digits, '_', '$', '#'), starting with a letter or '_', e.g. SQLEXPRESS", l.Instance)
			case upper == "MSSQLSERVER" || upper == "DEFAULT":
				ps.add(key+".instance", "%q is reserved for SQL Server's default instance, which clients reach by port, not by name; choose another name or leave instance empty", l.Instance)
			default:
				if j, dup := instances[upper]; dup {
					ps.add(key+".instance", "%q is also the instance of sql[%d] (instance names are case-insensitive)", l.Instance, j)
				}
				instances[upper] = i
			}
		}
		if l.MaxConnections < 0 || l.MaxConnections > maxSQLMaxConnections {
			ps.add(key+".max_connections", "%d: use 1-%d (default %d)", l.MaxConnections, maxSQLMaxConnections, DefaultSQLMaxConnections)
		}
		l.Upstream.validate(ps, key+".upstream")
		if a := l.Audit; a.User != "" && a.PasswordEnv == "" {
			ps.add(key+".audit.password_env", "missing; name the environment variable that holds the password of audit.user (e.g. GATEWAY_AUDIT_PASSWORD)")
		} else if a.User == "" && a.PasswordEnv != "" {
			ps.add(key+".audit.user", "missing; password_env is set but no user names the login")
		}
	}
}

func (b *SQLBrowser) validate(list []SQLListener, ps *problems) {
	if b.Listen == "" {
		return
	}
	checkListen(ps, "sql_browser.listen", b.Listen)
	for _, l := range list {
		if l.Instance != "" {
			return
		}
	}
	ps.add("sql_browser.listen", "is set but no sql[] listener has an instance to announce; set sql[N].instance (e.g. SQLEXPRESS) or sql_browser.listen: \"\"")
}

func (u *SQLUpstream) validate(ps *problems, key string) {
	host := ""
	if u.Address == "" {
		ps.add(key+".address", "missing; the SQL Server as host:port, e.g. 10.0.1.7:1433, or host\\INSTANCE")
	} else if a, err := ParseUpstreamAddress(u.Address); err != nil {
		ps.add(key+".address", "%v", err)
	} else {
		host = a.Host
	}
	checkEnum(ps, key+".encryption", u.Encryption, upstreamEncryptions)
	checkEnum(ps, key+".routing", u.Routing, routings)
	if u.Routing == RoutingFollow {
		switch {
		case len(u.RoutingAllow) == 0:
			ps.add(key+".routing_allow", "is empty but routing is follow; list the servers the gateway may follow a route to, e.g. [\"*.database.windows.net\"] or [sql02.corp.local]")
		case u.PinSHA256 != "":
			ps.add(key+".pin_sha256", "cannot be used with routing: follow: a routed server has a certificate of its own; verify with ca_file (or the system roots) instead")
		case u.Encryption == UpstreamEncryptionDisabledLoopback:
			ps.add(key+".routing", "follow cannot be used with encryption: disabled_loopback: a routed server is not on loopback")
		}
	}
	for i, p := range u.RoutingAllow {
		if msg := checkHostName(p, true); msg != "" {
			ps.add(fmt.Sprintf("%s.routing_allow[%d]", key, i), "%s", msg)
		}
	}
	if len(u.RoutingAllow) > 0 && u.Routing != RoutingFollow {
		ps.add(key+".routing_allow", "has no effect unless routing is follow")
	}
	if u.Encryption == UpstreamEncryptionDisabledLoopback && host != "" && !IsLoopbackHost(host) {
		ps.add(key+".encryption", "disabled_loopback is only allowed for 127.0.0.0/8, ::1 or localhost, not %q; use required", host)
	}
	if u.CAFile != "" {
		checkFile(ps, key+".ca_file", u.CAFile)
	}
	if u.PinSHA256 != "" {
		if _, err := ParsePin(u.PinSHA256); err != nil {
			ps.add(key+".pin_sha256", "%v", err)
		}
	}
	if u.InsecureSkipVerify {
		if u.Encryption == UpstreamEncryptionStrict {
			ps.add(key+".insecure_skip_verify", "cannot be used with encryption: strict (TDS 8 forbids unverified certificates)")
		}
		if u.PinSHA256 != "" || u.CAFile != "" {
			ps.add(key+".insecure_skip_verify", "contradicts ca_file/pin_sha256; remove insecure_skip_verify to verify the server")
		}
	}
	if u.ServerName != "" {
		if msg := checkHostName(u.ServerName, false); msg != "" {
			ps.add(key+".server_name", "%s", msg)
		}
	}
}

// ParsePin decodes a SHA-256 pin written as 64 hex digits, optionally
// separated by colons (as openssl prints fingerprints).
func ParsePin(s string) ([]byte, error) {
	clean := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q is not a SHA-256 fingerprint: write 64 hex digits (openssl x509 -noout -fingerprint -sha256)", s)
	}
	return b, nil
}

// IsLoopbackHost reports whether host is a loopback IP literal or "localhost".
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

func hostOf(addr string) string {
	if a, err := ParseUpstreamAddress(addr); err == nil {
		return a.Host
	}
	return addr
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// checkListen validates a listen address; port 0 (any free port) is allowed.
func checkListen(ps *problems, key, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.add(key, "%q is not host:port; write e.g. \":443\" or \"127.0.0.1:9901\"", addr)
		return false
	}
	if !validPort(port) {
		ps.add(key, "%q: port must be 0-65535", addr)
		return false
	}
	if host != "" && net.ParseIP(host) == nil && checkHostName(host, false) != "" {
		ps.add(key, "%q: host must be an IP address or a name", addr)
		return false
	}
	return true
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

// checkHostName returns "" when name is a valid DNS name or IP address
// (a leading "*." wildcard label too, when wildcard is true), else a message.
func checkHostName(name string, wildcard bool) string {
	if net.ParseIP(name) != nil {
		return ""
	}
	n := strings.TrimSuffix(name, ".")
	if wildcard && strings.HasPrefix(n, "*.") {
		n = n[2:]
	}
	if n == "" || len(n) > 253 {
		return fmt.Sprintf("%q is not a valid host name", name)
	}
	for _, label := range strings.Split(n, ".") {
		if !labelRE.MatchString(label) {
			if strings.Contains(label, "*") {
				return fmt.Sprintf("%q: a wildcard may only be the whole first label, as in *.example.com", name)
			}
			return fmt.Sprintf("%q is not a valid host name", name)
		}
	}
	return ""
}

func checkUpstreamURL(ps *problems, key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		ps.add(key, "%q must be an http:// or https:// URL with a host, e.g. http://10.0.0.5:80", raw)
		return
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		ps.add(key, "%q: remove the query, fragment or user info", raw)
	}
	if p := u.Port(); p != "" && !validPort(p) {
		ps.add(key, "%q: port must be 1-65535", raw)
	}
}

func checkFile(ps *problems, key, path string) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		ps.add(key, "cannot read %s: %v", path, unwrapPathError(err))
	case st.IsDir():
		ps.add(key, "%s is a directory, not a file", path)
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// validateStorage checks a redis:// storage and its storage_redis keys, or
// that those keys are left alone with a directory.
func (c *Config) validateStorage(ps *problems) {
	r := c.StorageRedis
	if !c.RedisStorage() {
		if strings.Contains(c.Storage, "://") {
			ps.add("storage", "%q: use a directory, or redis:// or rediss:// for a cluster", c.Storage)
		}
		if r.PasswordEnv != "" || r.EncryptionKeyEnv != "" || r.CAFile != "" {
			ps.add("storage_redis", "has no effect: storage is a directory, not redis://")
		}
		return
	}
	u, err := url.Parse(c.Storage)
	switch {
	case err != nil:
		ps.add("storage", "%q is not a URL: %v", c.Storage, err)
	case u.Hostname() == "" || u.Port() == "":
		ps.add("storage", "%q: write redis://host:port/db, e.g. redis://10.0.0.9:6379/0", c.Storage)
	case u.User != nil:
		if _, hasPw := u.User.Password(); hasPw {
			ps.add("storage", "puts a password in the URL; name an environment variable in storage_redis.password_env instead")
		}
	}
	if u != nil && strings.Trim(u.Path, "/") != "" {
		if _, err := strconv.Atoi(strings.Trim(u.Path, "/")); err != nil {
			ps.add("storage", "%q: the path must be a database number, e.g. /0", c.Storage)
		}
	}
	if r.EncryptionKeyEnv == "" {
		ps.add("storage_redis.encryption_key_env", "missing: name the environment variable holding 32 random bytes in base64 (openssl rand -base64 32); every value is sealed with it")
	} else if v, ok := os.LookupEnv(r.EncryptionKeyEnv); !ok || v == "" {
		ps.add("storage_redis.encryption_key_env", "environment variable %s is not set", r.EncryptionKeyEnv)
	} else if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err != nil || len(k) != 32 {
		ps.add("storage_redis.encryption_key_env", "%s must hold 32 bytes in base64 (openssl rand -base64 32)", r.EncryptionKeyEnv)
	}
	if r.PasswordEnv != "" {
		if _, ok := os.LookupEnv(r.PasswordEnv); !ok {
			ps.add("storage_redis.password_env", "environment variable %s is not set", r.PasswordEnv)
		}
	}
	if strings.TrimSpace(r.Prefix) == "" || strings.ContainsAny(r.Prefix, " :*?[]") {
		ps.add("storage_redis.prefix", "%q: use letters, digits, '-', '_' or '.' (default gateway)", r.Prefix)
	}
	if r.CAFile != "" {
		if !strings.HasPrefix(c.Storage, "rediss://") {
			ps.add("storage_redis.ca_file", "only applies to rediss:// (Redis over TLS)")
		} else {
			checkFile(ps, "storage_redis.ca_file", r.CAFile)
		}
	}
}

// checkProxyProtocol checks a proxy_protocol block.
func checkProxyProtocol(ps *problems, key string, p ProxyProtocol) {
	for i, t := range p.Trusted {
		if _, err := netip.ParsePrefix(t); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(t); err == nil {
			continue
		}
		ps.add(fmt.Sprintf("%s.trusted[%d]", key, i), "%q is not an address or a CIDR such as 10.0.0.0/24", t)
	}
	switch {
	case p.Enabled && len(p.Trusted) == 0:
		ps.add(key+".trusted", "is empty but enabled is true: list the load balancers' addresses (CIDRs) whose PROXY headers to accept")
	case !p.Enabled && len(p.Trusted) > 0:
		ps.add(key+".enabled", "is false, so trusted has no effect; set enabled: true behind a load balancer that sends PROXY headers")
	}
}
