package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gateway-project/gateway/cmd/gateway/internal/lifecycle"
	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
)

func newCheckCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and show what it would serve",
		Long: "check validates the configuration, then prints each listener, its upstream\n" +
			"and where its certificate comes from, with its expiry when known (operator\n" +
			"files, and certificates already in storage) and, from an ACME CA, the challenge\n" +
			"types that will be tried. It exits 1 listing every problem, a name no enabled\n" +
			"challenge can validate included. It warns about upstream certificates issued by\n" +
			"`gateway ca issue` that expire within 30 days.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			loaded, err := loadConfig(cmd)
			if err != nil {
				var ve *configs.ValidationError
				if errors.As(err, &ve) {
					printProblems(out, ve)
					return fmt.Errorf("configuration has %d problem(s)", len(ve.Problems))
				}
				return err
			}
			// Read-only: storage says when certificates an earlier run
			// obtained expire; nothing is written or obtained.
			storageLine, err := lifecycle.DescribeStorage(cmd.Context(), &loaded.Config)
			if err != nil {
				printProblems(out, &configs.ValidationError{Source: loaded.Source, Problems: []configs.Problem{{Key: "storage_redis.encryption_key_env", Message: err.Error()}}})
				return fmt.Errorf("configuration has 1 problem(s)")
			}
			fmt.Fprintln(out, storageLine)
			sources, err := tlsmgr.PlanSourcesIn(loaded.TLS, lifecycle.LocalStorageDir(&loaded.Config), loaded.Names())
			if err != nil {
				var pe *tlsmgr.PlanError
				if errors.As(err, &pe) {
					printProblems(out, &configs.ValidationError{Source: loaded.Source, Problems: pe.Problems})
					return fmt.Errorf("configuration has %d problem(s)", len(pe.Problems))
				}
				return fmt.Errorf("certificates: %w", err)
			}
			printPlan(out, loaded, sources)
			// Upstream certificates `gateway ca issue` wrote: read from the
			// records it keeps in storage, not by connecting to the servers.
			issued, err := tlsmgr.UpstreamCertificatesIn(loaded.TLS, lifecycle.LocalStorageDir(&loaded.Config))
			if err != nil {
				return fmt.Errorf("reading upstream certificate records: %w", err)
			}
			printUpstreamCerts(out, issued, time.Now())
			return nil
		},
	}
	addConfigFlags(cmd)
	return cmd
}

func printProblems(w io.Writer, ve *configs.ValidationError) {
	src := ve.Source
	if src == "" {
		src = "configuration"
	}
	fmt.Fprintf(w, "%s: %d problem(s)\n", src, len(ve.Problems))
	for _, p := range ve.Problems {
		fmt.Fprintf(w, "  %s: %s\n", p.Key, p.Message)
	}
}

// printPlan describes what the configuration serves, one listener a block.
func printPlan(w io.Writer, l *configs.Loaded, sources []tlsmgr.NameSource) {
	certOf := map[string]string{}
	for _, s := range sources {
		src := s.Source
		if len(s.Challenges) > 0 {
			src += "; challenges " + strings.Join(s.Challenges, ", ")
		}
		certOf[strings.ToLower(s.Name)] = src
	}
	src := l.Source
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(w, "config %s: ok\n", src)
	fmt.Fprintf(w, "storage %s; tls issuer %s, minimum TLS %s\n", l.Storage, l.TLS.Issuer, l.TLS.MinVersion)
	if rt := l.Runtime; rt.Percent() != configs.DefaultGOGC || rt.MemoryLimit != "" {
		limit := rt.MemoryLimit
		if limit == "" {
			limit = "none"
		}
		fmt.Fprintf(w, "runtime gogc %d, memory limit %s\n", rt.Percent(), limit)
	}
	if l.Admin.Listen != "" {
		fmt.Fprintf(w, "admin   %s (/healthz /readyz /metrics /certs)\n", l.Admin.Listen)
	}
	if l.HTTP.Listen != "" {
		fmt.Fprintf(w, "https   %s\n", l.HTTP.Listen)
		for i, s := range l.HTTP.Sites {
			def := ""
			if i == 0 {
				def = " (default site)"
			}
			fmt.Fprintf(w, "  site %s%s -> %s\n", strings.Join(s.Hosts, ", "), def, strings.Join(s.Upstreams, ", "))
			fmt.Fprintf(w, "    %s\n", describeSite(s))
			for _, h := range s.Hosts {
				fmt.Fprintf(w, "    certificate %s: %s\n", h, certOf[strings.ToLower(h)])
			}
		}
	}
	if l.HTTP.RedirectListen != "" {
		fmt.Fprintf(w, "http    %s -> 308 to https\n", l.HTTP.RedirectListen)
	}
	printBrowser(w, l)
	for _, s := range l.SQL {
		up := s.Upstream
		verify := describeVerification(up)
		fmt.Fprintf(w, "sql     %s %s (client_encryption %s) -> %s (encryption %s, %s)\n",
			s.Name, s.Listen, s.ClientEncryption, up.Address, up.Encryption, verify)
		if s.Instance != "" {
			fmt.Fprintf(w, "    instance %s (clients write HOST\\%s)\n", s.Instance, s.Instance)
		}
		fmt.Fprintf(w, "    %s\n", describeRouting(up))
		fmt.Fprintf(w, "    certificate %s: %s\n", s.Hostname, certOf[strings.ToLower(s.Hostname)])
	}
}

func describeVerification(u configs.SQLUpstream) string {
	t := u.TLS()
	switch {
	case u.Encryption == configs.UpstreamEncryptionDisabledLoopback:
		return "plain text on loopback"
	case t.InsecureSkipVerify:
		return "WARNING: server certificate NOT verified"
	case t.PinSHA256 != "":
		return "verified by SHA-256 pin"
	case t.CAFile != "":
		return fmt.Sprintf("verifying %s against %s", t.ServerName, t.CAFile)
	default:
		return fmt.Sprintf("verifying %s against system roots", t.ServerName)
	}
}

// printBrowser describes the SQL Browser responder: what it announces, or
// that instance names are set but nothing announces them.
func printBrowser(w io.Writer, l *configs.Loaded) {
	var named []string
	for _, s := range l.SQL {
		if s.Instance != "" {
			named = append(named, fmt.Sprintf("%s (%s %s)", s.Instance, s.Name, s.Listen))
		}
	}
	switch {
	case l.SQLBrowser.Listen != "":
		fmt.Fprintf(w, "sql-browser udp %s -> %s\n", l.SQLBrowser.Listen, strings.Join(named, ", "))
	case len(named) > 0:
		fmt.Fprintf(w, "sql-browser off (instance names set: %s; set sql_browser.listen to announce them)\n", strings.Join(named, ", "))
	}
}

// describeRouting says how the upstream is reached and what a routing
// ENVCHANGE in its login replies leads to.
func describeRouting(u configs.SQLUpstream) string {
	reach := "dialled at " + u.Address
	if a, err := configs.ParseUpstreamAddress(u.Address); err == nil {
		switch {
		case a.Instance != "":
			reach = fmt.Sprintf("named instance %s on %s (port from its SQL Browser, UDP 1434)", a.Instance, a.Host)
		case net.ParseIP(a.Host) == nil:
			reach += " (every address of the name at once)"
		}
	}
	if u.Routing == configs.RoutingFollow {
		return fmt.Sprintf("%s; routing: follow, to %s only (verified for the routed name)", reach, strings.Join(u.RoutingAllow, ", "))
	}
	return reach + "; routing: refuse (a login reply that routes elsewhere gets error 50906)"
}

// describeSite lists a site's IIS-facing behaviour in one line.
func describeSite(s configs.Site) string {
	var on []string
	add := func(cond bool, what string) {
		if cond {
			on = append(on, what)
		}
	}
	add(s.WindowsAuth, "windows_auth")
	h2 := s.HTTP2
	if h2 == "" {
		h2 = configs.HTTP2Auto
	}
	on = append(on, "http2 "+string(h2))
	add(s.RewriteLocation, "rewrite_location")
	add(s.CookieSecure, "cookie_secure")
	add(s.CookieHTTPOnly, "cookie_http_only")
	add(s.CookieSameSite != "", "cookie_same_site "+string(s.CookieSameSite))
	add(s.UpgradeInsecureRequests, "upgrade_insecure_requests")
	add(s.MaxRequestBody > 0, fmt.Sprintf("max_request_body %d", s.MaxRequestBody))
	lb := s.LoadBalancing
	if lb == "" {
		lb = configs.LoadBalancingRoundRobin
	}
	on = append(on, "load_balancing "+string(lb))
	add(s.Sticky.Cookie != "", "sticky cookie "+s.Sticky.Cookie)
	add(s.HealthCheck.Path != "", fmt.Sprintf("health_check %s every %s", s.HealthCheck.Path, s.HealthCheck.Interval))
	u := s.UpstreamTLS
	switch {
	case u.InsecureSkipVerify:
		on = append(on, "WARNING: upstream certificates NOT verified")
	case u.PinSHA256 != "":
		on = append(on, "upstream_tls pinned")
	case u.CAFile != "":
		on = append(on, "upstream_tls verified against "+u.CAFile)
	}
	add(u.SNIFromHost, "upstream_tls sni_from_host")
	add(s.ClientAuth.Mode != "" && s.ClientAuth.Mode != configs.ClientAuthNone, "client_auth "+string(s.ClientAuth.Mode))
	return strings.Join(on, ", ")
}

// upstreamExpiryWarning is how long before an upstream certificate from
// `gateway ca issue` expires check warns about it.
const upstreamExpiryWarning = 30 * 24 * time.Hour

// printUpstreamCerts lists the upstream certificates the internal CA
// issued, with a warning for those expiring within upstreamExpiryWarning.
func printUpstreamCerts(w io.Writer, recs []tlsmgr.UpstreamRecord, now time.Time) {
	for _, r := range recs {
		names := strings.Join(r.Names, ", ")
		left := r.NotAfter.Sub(now)
		switch {
		case left <= 0:
			fmt.Fprintf(w, "WARNING upstream certificate %s (%s) EXPIRED on %s: issue a new one with gateway ca issue and import it\n", names, r.File, r.NotAfter.Format(time.DateOnly))
		case left < upstreamExpiryWarning:
			fmt.Fprintf(w, "WARNING upstream certificate %s (%s) expires on %s, in %d days: issue a new one with gateway ca issue and import it\n", names, r.File, r.NotAfter.Format(time.DateOnly), int(left.Hours()/24))
		default:
			fmt.Fprintf(w, "upstream certificate %s (%s) from the internal CA: expires %s\n", names, r.File, r.NotAfter.Format(time.DateOnly))
		}
	}
}
