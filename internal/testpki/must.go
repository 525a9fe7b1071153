package testpki

import "crypto/x509"

// TB is what the Must helpers need of a test or benchmark: testing.TB has
// it, without this package (linked into `gateway demo` through tdstest)
// importing testing.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// MustCA is NewCA that fails tb on error.
func MustCA(tb TB, name string, o Options) *CA {
	tb.Helper()
	ca, err := NewCA(name, o)
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// MustIssue is Issue that fails tb on error.
func (ca *CA) MustIssue(tb TB, o Options, names ...string) *Cert {
	tb.Helper()
	c, err := ca.Issue(o, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// MustSelfSigned is SelfSigned that fails tb on error.
func MustSelfSigned(tb TB, o Options, names ...string) *Cert {
	tb.Helper()
	c, err := SelfSigned(o, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// MustPoolOf is PoolOf that fails tb on error.
func MustPoolOf(tb TB, pemData []byte) *x509.CertPool {
	tb.Helper()
	p, err := PoolOf(pemData)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
