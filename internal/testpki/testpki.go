// Package testpki makes throwaway certificate authorities and certificates
// for the tests, the test doubles (tdstest) and the benchmarks: one place
// that knows how a test certificate is built, instead of one helper per
// package.
//
// It does not make certificates for production: the gateway's own CA is
// tlsmgr's internal issuer. Keys are ECDSA P-256 unless Options asks for
// another kind; serial numbers are random; a certificate is valid from an
// hour ago (clock skew) for a day unless Options says otherwise.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// KeyType is the kind of a certificate's key and how KeyPEM encodes it.
type KeyType int

const (
	// ECDSA is a P-256 key in PKCS#8 ("PRIVATE KEY"), the default.
	ECDSA KeyType = iota
	// ECDSASEC1 is a P-256 key in SEC 1 ("EC PRIVATE KEY"), as openssl ecparam writes it.
	ECDSASEC1
	// ECDSAWithParams is ECDSASEC1 preceded by an "EC PARAMETERS" block
	// naming the curve (openssl ecparam -genkey without -noout).
	ECDSAWithParams
	// RSA is a 2048-bit RSA key in PKCS#1 ("RSA PRIVATE KEY").
	RSA
)

// Options shape a certificate; the zero value is a server certificate with
// an ECDSA key, valid from an hour ago for a day.
type Options struct {
	// CommonName is the subject's; "" means the first name issued for.
	CommonName string
	// Organization is the subject's organisation, when not "".
	Organization string
	// NotBefore and NotAfter bound the validity; zero means an hour ago
	// and a day from now.
	NotBefore, NotAfter time.Time
	// Client makes a client certificate (clientAuth) instead of a server
	// one (serverAuth).
	Client bool
	// Key is the key's kind.
	Key KeyType
}

// CA is a certificate authority made by a test.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // the CA certificate
}

// Cert is a certificate, its key and its issuer's certificate.
type Cert struct {
	Leaf    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the certificate alone
	KeyPEM  []byte
	// IssuerPEM is the issuing CA's certificate; nil when self-signed.
	IssuerPEM []byte
	der       []byte
	issuerDER []byte
}

// NewCA makes a CA named name (o.CommonName is ignored; names are not
// used). Its key is always ECDSA P-256.
func NewCA(name string, o Options) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testpki: generating CA key: %w", err)
	}
	o.CommonName = name
	tmpl, err := template(o, nil)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.ExtKeyUsage = nil
	tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLenZero = true, true, true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testpki: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parsing CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: PEM("CERTIFICATE", der)}, nil
}

// Issue makes a certificate for names (DNS names or IP addresses; at least
// one) signed by ca.
func (ca *CA) Issue(o Options, names ...string) (*Cert, error) {
	return issue(o, names, ca.Cert, ca.Key)
}

// SelfSigned makes a certificate for names that is its own CA: a client
// trusts it by trusting the certificate itself.
func SelfSigned(o Options, names ...string) (*Cert, error) {
	return issue(o, names, nil, nil)
}

// issue makes a certificate for names signed by parent's key, or by its own
// (then it is a CA too) when parent is nil.
func issue(o Options, names []string, parent *x509.Certificate, parentKey crypto.Signer) (*Cert, error) {
	if len(names) == 0 {
		return nil, errors.New("testpki: a certificate needs at least one name")
	}
	key, keyPEM, err := newKey(o.Key)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(o, names)
	if err != nil {
		return nil, err
	}
	var issuerDER []byte
	if parent == nil {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
		parent, parentKey = tmpl, key
	} else {
		issuerDER = parent.Raw
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: creating certificate for %v: %w", names, err)
	}
	return newCert(der, key, keyPEM, issuerDER)
}

// TLS is the certificate for a crypto/tls server or client: the leaf
// alone, the key and the parsed leaf.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.Key, Leaf: c.Leaf}
}

// TLSWithChain is TLS with the issuer's certificate sent after the leaf.
func (c *Cert) TLSWithChain() tls.Certificate {
	tc := c.TLS()
	if c.issuerDER != nil {
		tc.Certificate = append(tc.Certificate, c.issuerDER)
	}
	return tc
}

// ChainPEM is the certificate followed by its issuer's, as a server's
// certificate file holds them.
func (c *Cert) ChainPEM() []byte {
	return append(append([]byte{}, c.CertPEM...), c.IssuerPEM...)
}

// Pool is a pool trusting ca alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Pool is a pool trusting the certificate itself (for a self-signed one).
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Leaf)
	return p
}

// PoolOf is a pool of the certificates in pemData; an error when there are
// none.
func PoolOf(pemData []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		return nil, errors.New("testpki: no certificate in PEM data")
	}
	return p, nil
}

// PEM encodes der as one PEM block of type typ.
func PEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// template is the certificate template for o and names.
func template(o Options, names []string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testpki: serial number: %w", err)
	}
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if o.Key == RSA {
		t.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.Client {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if o.Organization != "" {
		t.Subject.Organization = []string{o.Organization}
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = now.Add(-time.Hour)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = now.Add(24 * time.Hour)
	}
	if t.Subject.CommonName == "" && len(names) > 0 {
		t.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, n)
		}
	}
	return t, nil
}

// curveP256 is the named curve P-256 (its OID, DER), as openssl ecparam
// writes it in an "EC PARAMETERS" block.
var curveP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// newKey makes a key of kind k and its PEM encoding.
func newKey(k KeyType) (crypto.Signer, []byte, error) {
	if k == RSA {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, fmt.Errorf("testpki: generating RSA key: %w", err)
		}
		return key, PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: generating ECDSA key: %w", err)
	}
	switch k {
	case ECDSASEC1, ECDSAWithParams:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("testpki: encoding key: %w", err)
		}
		keyPEM := PEM("EC PRIVATE KEY", der)
		if k == ECDSAWithParams {
			keyPEM = append(PEM("EC PARAMETERS", curveP256), keyPEM...)
		}
		return key, keyPEM, nil
	default:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("testpki: encoding key: %w", err)
		}
		return key, PEM("PRIVATE KEY", der), nil
	}
}

func newCert(der []byte, key crypto.Signer, keyPEM, issuerDER []byte) (*Cert, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: parsing certificate: %w", err)
	}
	c := &Cert{Leaf: leaf, Key: key, CertPEM: PEM("CERTIFICATE", der), KeyPEM: keyPEM, der: der, issuerDER: issuerDER}
	if issuerDER != nil {
		c.IssuerPEM = PEM("CERTIFICATE", issuerDER)
	}
	return c, nil
}
