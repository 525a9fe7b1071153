package tlsmgr

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/gateway-project/gateway/configs"
)

// ErrIncorrectPassword matches (errors.Is) the error for a PFX file whose
// password is wrong; it is go-pkcs12's own sentinel.
var ErrIncorrectPassword = pkcs12.ErrIncorrectPassword

// operatorCert is one loaded entry of tls.certificates.
type operatorCert struct {
	index  int // position in tls.certificates
	file   configs.CertificateFile
	cert   *tls.Certificate // leaf first, Leaf set
	names  []string         // normalized DNS names (wildcards kept) and IPs
	digest [sha256.Size]byte
}

// sourceOf is the file an operator certificate is read from, for logs and
// reports: the PFX file, or the certificate file of a PEM pair.
func sourceOf(f configs.CertificateFile) string {
	if f.PFXFile != "" {
		return f.PFXFile
	}
	return f.CertFile
}

// certKey is the config key of an operator certificate entry's main file.
func certKey(i int, f configs.CertificateFile) string {
	if f.PFXFile != "" {
		return fmt.Sprintf("tls.certificates[%d].pfx_file", i)
	}
	return fmt.Sprintf("tls.certificates[%d].cert_file", i)
}

// readOperatorFiles returns the contents of an entry's files and a digest of
// them, which the watcher compares to notice a change.
func readOperatorFiles(f configs.CertificateFile) (files [][]byte, digest [sha256.Size]byte, err error) {
	paths := []string{f.PFXFile}
	if f.PFXFile == "" {
		paths = []string{f.CertFile, f.KeyFile}
	}
	h := sha256.New()
	for _, p := range paths {
		if p == "" {
			return nil, digest, errors.New("certificate entry needs cert_file and key_file, or pfx_file")
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, digest, fmt.Errorf("reading certificate: %w", err) // *fs.PathError names the file
		}
		files = append(files, data)
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	copy(digest[:], h.Sum(nil))
	return files, digest, nil
}

// loadOperatorCert reads and parses one entry of tls.certificates. Errors
// name the file.
func loadOperatorCert(i int, f configs.CertificateFile) (*operatorCert, error) {
	files, digest, err := readOperatorFiles(f)
	if err != nil {
		return nil, err
	}
	return parseOperatorCert(i, f, files, digest)
}

func parseOperatorCert(i int, f configs.CertificateFile, files [][]byte, digest [sha256.Size]byte) (*operatorCert, error) {
	var (
		cert *tls.Certificate
		err  error
	)
	if f.PFXFile != "" {
		cert, err = parsePFX(f, files[0])
	} else {
		cert, err = parsePEMPair(f, files[0], files[1])
	}
	if err != nil {
		return nil, err
	}
	names := certNames(cert.Leaf)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: certificate names no host (no DNS or IP subject alternative names)", sourceOf(f))
	}
	return &operatorCert{index: i, file: f, cert: cert, names: names, digest: digest}, nil
}

// parsePEMPair decodes a certificate chain (any order; the certificate
// matching the key becomes the leaf) and a PKCS#1, PKCS#8 or SEC 1 key.
func parsePEMPair(f configs.CertificateFile, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	var certs []*x509.Certificate
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parsing certificate: %w", f.CertFile, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block found", f.CertFile)
	}
	key, err := parsePEMKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.KeyFile, err)
	}
	cert, err := assembleChain(certs, key)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	return cert, nil
}

// parsePEMKey returns the first private key in data.
func parsePEMKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		if block.Headers["Proc-Type"] != "" || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("private key is encrypted; store it unencrypted (openssl pkey -in KEY -out KEY.plain) and protect the file, or use a PFX file")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue // e.g. "EC PARAMETERS" written by openssl ecparam -genkey
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return signer, nil
	}
}

// parsePFX decodes a PKCS#12 file with the password from the environment
// variable f.PFXPasswordEnv (empty when unset). go-pkcs12 reads both the
// OpenSSL 3 default (PBES2, AES-256-CBC, PBKDF2, HMAC-SHA-256 MAC) and the
// legacy 3DES/RC2 with SHA-1 MAC that Windows and `openssl -legacy` export.
func parsePFX(f configs.CertificateFile, data []byte) (*tls.Certificate, error) {
	password := ""
	if f.PFXPasswordEnv != "" {
		password = os.Getenv(f.PFXPasswordEnv)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		hint := "the empty password was tried because pfx_password_env is not set"
		if f.PFXPasswordEnv != "" {
			hint = "the password was read from environment variable " + f.PFXPasswordEnv
		}
		return nil, fmt.Errorf("%s: wrong PFX password (%s): %w", f.PFXFile, hint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: decoding PFX: %w", f.PFXFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported private key type %T", f.PFXFile, key)
	}
	cert, err := assembleChain(append([]*x509.Certificate{leaf}, chain...), signer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.PFXFile, err)
	}
	return cert, nil
}

// assembleChain puts the certificate whose public key matches key first and
// keeps the others, in their order, as the chain. Windows exports do not
// always put the leaf first.
func assembleChain(certs []*x509.Certificate, key crypto.Signer) (*tls.Certificate, error) {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	leafAt := -1
	for i, c := range certs {
		if pub.Equal(c.PublicKey) {
			leafAt = i
			break
		}
	}
	if leafAt < 0 {
		return nil, errors.New("private key does not match any certificate")
	}
	leaf := certs[leafAt]
	out := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for i, c := range certs {
		if i != leafAt {
			out.Certificate = append(out.Certificate, c.Raw)
		}
	}
	return out, nil
}
