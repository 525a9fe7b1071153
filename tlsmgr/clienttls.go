package tlsmgr

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
)

// Kinds of upstream verification failure. A handshake made with a
// ClientTLSConfig fails with a *VerifyError that matches one of these with
// errors.Is (crypto/tls returns the VerifyConnection error unwrapped).
var (
	ErrUntrusted    = errors.New("certificate is not trusted")
	ErrNameMismatch = errors.New("certificate is not valid for the server name")
	ErrPinMismatch  = errors.New("certificate pin mismatch")
)

// VerifyError reports why an upstream's certificate was rejected.
type VerifyError struct {
	// ServerName is the name the certificate was verified against.
	ServerName string
	// Kind is ErrUntrusted, ErrNameMismatch or ErrPinMismatch.
	Kind error
	// Got and Want are, for ErrPinMismatch, the SHA-256 of the leaf the
	// server presented and the configured pin.
	Got, Want []byte
	// Err is the crypto/x509 error behind ErrUntrusted and ErrNameMismatch.
	Err error
}

func (e *VerifyError) Error() string {
	switch {
	case errors.Is(e.Kind, ErrPinMismatch):
		return fmt.Sprintf("certificate pin mismatch: got %x want %x", e.Got, e.Want)
	case e.Err != nil:
		return e.Kind.Error() + ": " + e.Err.Error()
	}
	return e.Kind.Error()
}

// Unwrap makes errors.Is match the Kind and errors.As reach the x509 error
// (x509.UnknownAuthorityError, x509.HostnameError, ...).
func (e *VerifyError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

var errNoPeerCertificate = errors.New("the server presented no certificate")

// sessionCacheSize bounds the sessions a client configuration keeps: one per
// server name (or address, without one), so a few suffice.
const sessionCacheSize = 64

// ClientTLSConfig builds the *tls.Config used to connect to an upstream
// server described by u. TLS 1.2 is the minimum.
//
// Verification, in order of the settings:
//   - InsecureSkipVerify: nothing is verified, and a warning is logged now.
//     (The per-connection warning docs/architecture.md asks for, under
//     "Cross-cutting rules", belongs to the caller, which knows the
//     connection.)
//   - PinSHA256 without CAFile: only the pin is checked (the SHA-256 of the
//     leaf certificate's DER). The chain and the name are not: a pin names
//     one exact certificate, which is what operators of self-signed SQL
//     Server certificates (whose CN is often a bare machine name) can give.
//   - PinSHA256 with CAFile: the chain must verify to the CA file's roots for
//     ServerName, and the leaf must match the pin.
//   - otherwise: the chain must verify for ServerName to the roots in CAFile,
//     or to the system roots when CAFile is empty.
//
// Failed verification returns a *VerifyError from the handshake.
//
// The configuration keeps a cache of TLS sessions, so that a new connection
// to the same upstream resumes a session (an abbreviated handshake: no
// certificate, no signature, no key exchange) when the server issues session
// tickets. Resumption does not weaken verification: the server must prove it
// holds the session's secret, which only the verified server of the full
// handshake has, and VerifyConnection runs on every resumed handshake: the
// pin is checked again, and so is the chain and name unless this same
// configuration accepted that leaf before, in which case every certificate
// must still be within its validity period. Clones of the configuration
// share the cache; a reload builds a new configuration, and so a new, empty
// cache.
func ClientTLSConfig(u configs.UpstreamTLS, logger *zap.Logger) (*tls.Config, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	log := logger.Named("tlsmgr").With(zap.String("server_name", u.ServerName))
	cfg := &tls.Config{
		ServerName:         u.ServerName,
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
	}

	if u.InsecureSkipVerify {
		if u.CAFile != "" || u.PinSHA256 != "" {
			return nil, fmt.Errorf("upstream %s: insecure_skip_verify contradicts ca_file and pin_sha256", u.ServerName)
		}
		log.Warn("upstream certificate verification disabled")
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}

	v := &verifier{serverName: u.ServerName, chain: true}
	if u.CAFile != "" {
		pool, err := loadCertPool(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: ca_file: %w", u.ServerName, err)
		}
		v.roots = pool
	}
	if u.PinSHA256 != "" {
		pin, err := configs.ParsePin(u.PinSHA256)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: pin_sha256: %w", u.ServerName, err)
		}
		v.pin = pin
		v.chain = u.CAFile != ""
	}
	if v.chain && u.ServerName == "" {
		return nil, errors.New("upstream server name is empty: set server_name so the certificate can be verified")
	}
	cfg.RootCAs = v.roots
	// crypto/tls's own verification is replaced, not skipped: VerifyConnection
	// runs on every handshake (full and resumed) and returns typed errors.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = v.verify
	return cfg, nil
}

// verifier checks an upstream's certificate as ClientTLSConfig documents.
type verifier struct {
	serverName string
	chain      bool           // verify the chain and the name
	roots      *x509.CertPool // nil: system roots
	pin        []byte         // nil: no pin

	mu       sync.Mutex
	verified map[[sha256.Size]byte]bool // leaves whose chain this verifier accepted
}

// maxVerifiedLeaves bounds verifier.verified; when full it starts over.
const maxVerifiedLeaves = 64

func (v *verifier) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &VerifyError{ServerName: v.serverName, Kind: ErrUntrusted, Err: errNoPeerCertificate}
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	// A resumed session carries the certificates of the handshake that
	// created it. When this verifier accepted that leaf's chain then (same
	// roots, same name), a resumption only needs every certificate still in
	// its validity period — what crypto/tls itself checks when it verifies
	// and resumes — and the pin below. Anything else, including a session
	// another configuration verified, gets the full verification.
	if v.chain && !(cs.DidResume && v.accepted(sum) && validNow(cs.PeerCertificates)) {
		opts := x509.VerifyOptions{
			DNSName:       v.serverName,
			Roots:         v.roots,
			Intermediates: x509.NewCertPool(),
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := leaf.Verify(opts); err != nil {
			kind := ErrUntrusted
			var he x509.HostnameError
			if errors.As(err, &he) {
				kind = ErrNameMismatch
			}
			return &VerifyError{ServerName: v.serverName, Kind: kind, Err: err}
		}
		v.accept(sum)
	}
	if v.pin != nil && !bytes.Equal(sum[:], v.pin) {
		return &VerifyError{ServerName: v.serverName, Kind: ErrPinMismatch, Got: sum[:], Want: v.pin}
	}
	return nil
}

func (v *verifier) accepted(sum [sha256.Size]byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.verified[sum]
}

func (v *verifier) accept(sum [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verified == nil || len(v.verified) >= maxVerifiedLeaves {
		v.verified = make(map[[sha256.Size]byte]bool)
	}
	v.verified[sum] = true
}

// validNow reports whether every certificate is inside its validity period.
func validNow(certs []*x509.Certificate) bool {
	now := time.Now()
	for _, c := range certs {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return false
		}
	}
	return true
}

// loadCertPool reads a PEM file of trusted certificates.
func loadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificates found", path)
	}
	return pool, nil
}
