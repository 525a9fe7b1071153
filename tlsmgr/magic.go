package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gateway-project/gateway/configs"
)

// startCertmagic creates the Manager's certmagic cache and config; the cache
// starts its maintenance goroutine (renewals), which Close stops. Issuers
// are set by the caller.
func (m *Manager) startCertmagic(internal bool) *certmagic.Config {
	// certmagic logs every step of an obtain at Info ("acquiring lock", ...);
	// the gateway logs the outcome itself (onEvent), so those become Debug.
	cmLog := m.log.Named("certmagic").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return demoteInfo{c}
	}))
	// The cache's maintenance goroutine starts before the config exists, so
	// the config reaches it through an atomic.
	var cfgRef atomic.Pointer[certmagic.Config]
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := cfgRef.Load(); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("certificate manager not ready")
		},
		Logger: cmLog,
	})
	magic := certmagic.New(m.cache, certmagic.Config{
		Storage:        m.storage,
		KeySource:      certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		OnEvent:        m.onEvent,
		ShouldEmitFunc: shouldEmit,
		Logger:         cmLog,
		// The internal CA publishes neither OCSP nor ARI; asking would only
		// produce log noise. ACME certificates keep certmagic's defaults.
		OCSP:       certmagic.OCSPConfig{DisableStapling: internal},
		DisableARI: internal,
	})
	cfgRef.Store(magic)
	return magic
}

// setupACME configures certmagic with an ACME issuer from m.cfg.ACME.
func (m *Manager) setupACME() error {
	a := m.cfg.ACME
	tmpl := certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    a.DisableHTTPChallenge,
		DisableTLSALPNChallenge: a.DisableTLSALPNChallenge,
	}
	if a.CARoot != "" {
		pool, err := loadCertPool(a.CARoot)
		if err != nil {
			return fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		tmpl.TrustedRoots = pool
	}
	if a.EAB.Enabled() {
		mac, err := a.EAB.MACKey()
		if err != nil {
			return fmt.Errorf("tls.acme.eab.mac_key_env: %w", err)
		}
		tmpl.ExternalAccount = &acme.EAB{KeyID: a.EAB.KeyID, MACKey: mac}
	}
	var prov certmagic.DNSProvider
	if a.DNS.Enabled() {
		var err error
		if prov, err = newDNSProvider(a.DNS, m.log.Named("dns01")); err != nil {
			return err
		}
	}
	magic := m.startCertmagic(false)
	tmpl.Logger = magic.Logger.Named("acme")
	m.acme = certmagic.NewACMEIssuer(magic, tmpl)
	var issuer certmagic.Issuer = m.acme
	if prov != nil {
		// Certmagic's issuer solves only DNS-01 once it has a DNS solver,
		// so HTTP-01 and TLS-ALPN-01, when enabled, get an issuer of their
		// own behind it (dnsFirst). m.acme stays the one that answers them.
		dnsTmpl := tmpl
		dnsTmpl.DNS01Solver = dnsSolver(a.DNS, prov, magic.Logger.Named("dns01"))
		dnsIss := certmagic.NewACMEIssuer(magic, dnsTmpl)
		if a.DisableHTTPChallenge && a.DisableTLSALPNChallenge {
			m.acme, issuer = dnsIss, dnsIss
		} else {
			issuer = dnsFirst{dns: dnsIss, fallback: m.acme, log: m.log.Named("dns01")}
		}
	}
	if iss, ok := issuer.(*certmagic.ACMEIssuer); ok && a.Email == "" {
		issuer = quietACME{iss}
	}
	magic.Issuers = []certmagic.Issuer{issuer}
	m.magic = magic
	return nil
}

// quietACME keeps certmagic from prompting on stdin for an e-mail address
// when tls.acme.email is empty: it prompts whenever it obtains interactively
// (ManageSync), which a service must never do. An account without contact is
// valid (RFC 8555 7.3). The embedded issuer supplies everything else.
type quietACME struct{ *certmagic.ACMEIssuer }

func (q quietACME) PreCheck(ctx context.Context, names []string, _ bool) error {
	return q.ACMEIssuer.PreCheck(ctx, names, false)
}

// SetChallengeAddresses tells the ACME issuer where the gateway answers
// challenges: httpAddr is the redirect listener (HTTP-01, answered by
// HTTPChallengeHandler), tlsAddr the HTTPS listener (TLS-ALPN-01, answered by
// ServerTLSConfig). Pass bound addresses (ln.Addr().String()) when the
// configured port is 0; "" keeps certmagic's default (80 and 443).
//
// Certmagic binds the challenge port itself while a challenge is pending and
// backs off when the port is taken, assuming whoever holds it answers; so
// without this call a gateway listening on :8080 or :8443 behind a port
// forward would have certmagic try (and, unprivileged, fail) to bind :80 and
// :443. Call before Manage; it does nothing for other issuers.
func (m *Manager) SetChallengeAddresses(httpAddr, tlsAddr string) error {
	if m.acme == nil {
		return nil
	}
	httpPort, err := portOf(httpAddr)
	if err != nil {
		return fmt.Errorf("ACME HTTP-01 address: %w", err)
	}
	tlsPort, err := portOf(tlsAddr)
	if err != nil {
		return fmt.Errorf("ACME TLS-ALPN-01 address: %w", err)
	}
	m.acme.AltHTTPPort = httpPort
	m.acme.AltTLSALPNPort = tlsPort
	return nil
}

func portOf(addr string) (int, error) {
	if addr == "" {
		return 0, nil
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("%q: port must be 0-65535", addr)
	}
	return n, nil
}

// shouldEmit selects the certmagic events onEvent logs, so certmagic does
// not build event data for the others (tls_get_certificate runs per
// handshake).
func shouldEmit(event string) bool {
	switch event {
	case "cert_obtained", "cert_failed", "cert_ocsp_revoked":
		return true
	}
	return false
}

// onEvent logs the outcome of certmagic's obtain and renew operations.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	identifier, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	op := OperationObtain
	if renewal {
		op = OperationRenew
	}
	switch event {
	case "cert_obtained":
		issuer, _ := data["issuer"].(string)
		fields := []zap.Field{zap.String("name", identifier), zap.String("issuer_key", issuer)}
		if renewal {
			m.log.Info("certificate renewed", fields...)
		} else {
			m.log.Info("certificate obtained", fields...)
		}
		m.record(normalizeName(identifier), string(m.cfg.Issuer), op, nil)
	case "cert_failed":
		err, _ := data["error"].(error)
		fields := []zap.Field{zap.String("name", identifier), zap.Error(err)}
		if left, ok := data["remaining"].(time.Duration); ok {
			fields = append(fields, zap.Duration("remaining", left))
		}
		if renewal {
			m.log.Error("certificate renewal failed", fields...)
		} else {
			m.log.Error("certificate obtain failed", fields...)
		}
		if err == nil {
			err = errors.New("failed") // certmagic always sets it; keep the event a failure regardless
		}
		m.record(normalizeName(identifier), string(m.cfg.Issuer), op, err)
	case "cert_ocsp_revoked":
		subjects, _ := data["subjects"].([]string)
		m.log.Error("certificate revoked; replacing it", zap.Strings("names", subjects))
	}
	return nil
}

// issuerSource describes the configured issuer for reports.
func issuerSource(cfg configs.TLS) string {
	switch cfg.Issuer {
	case configs.IssuerInternal:
		return fmt.Sprintf("internal CA %q", cfg.Internal.CAName)
	case configs.IssuerACME:
		return "ACME " + cfg.ACME.CA
	}
	return ""
}

// demoteInfo logs Info entries at Debug.
type demoteInfo struct{ zapcore.Core }

func (c demoteInfo) With(fields []zapcore.Field) zapcore.Core { return demoteInfo{c.Core.With(fields)} }

func (c demoteInfo) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level == zapcore.InfoLevel {
		e.Level = zapcore.DebugLevel
	}
	return c.Core.Check(e, ce)
}
