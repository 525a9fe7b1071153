package tdstest

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/gateway-project/gateway/internal/testpki"
)

// NewCertificate returns a server certificate for hosts (DNS names or IP
// addresses; none means "localhost" and "127.0.0.1") signed by a fresh
// throwaway CA, and that CA's root certificate in PEM for clients to trust.
// The first host is also the subject common name, which some clients (pytds)
// match against the host they connected to. Keys are ECDSA P-256; the
// certificates are valid from an hour ago for a day.
func NewCertificate(hosts ...string) (cert tls.Certificate, rootPEM []byte, err error) {
	return NewCertificateFor(24*time.Hour, hosts...)
}

// NewCertificateFor is NewCertificate with certificates valid for
// lifetime from an hour ago: a long-lived one is what a real SQL Server
// has, for an audit (`gateway demo` uses a year).
func NewCertificateFor(lifetime time.Duration, hosts ...string) (cert tls.Certificate, rootPEM []byte, err error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	o := testpki.Options{Organization: "tdstest", NotAfter: time.Now().Add(lifetime)}
	ca, err := testpki.NewCA("tdstest throwaway CA", o)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tdstest: %w", err)
	}
	c, err := ca.Issue(o, hosts...)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tdstest: %w", err)
	}
	return c.TLS(), ca.PEM, nil
}
