// Package ntlmtest is the server side of NTLMv2 (MS-NLMP), enough for the
// test doubles of IIS and SQL Server to authenticate real NTLM clients: it
// issues a CHALLENGE_MESSAGE and checks the AUTHENTICATE_MESSAGE's
// NTProofStr against a known password, and the channel binding a client
// put in it (Extended Protection). Session security (signing, sealing, key
// exchange) is not offered. It is test support: never use it to
// authenticate anyone.
package ntlmtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"

	//lint:ignore SA1019 the NT hash is MD4 by definition (MS-NLMP 3.3.2); this checks clients, it protects nothing
	"golang.org/x/crypto/md4" //nolint:staticcheck // as the lint:ignore above says
)

// Signature starts every NTLMSSP message.
const Signature = "NTLMSSP\x00"

// Negotiate flags offered in the challenge (MS-NLMP 2.2.2.5): Unicode,
// request target, NTLM, always sign, domain target, extended session
// security, target info. No LM key and no key exchange: NTLMv2 only.
const challengeFlags = 0x00000001 | 0x00000004 | 0x00000200 | 0x00008000 | 0x00010000 | 0x00080000 | 0x00800000

// AV pair IDs (MS-NLMP 2.2.2.1).
const (
	avEOL             = 0
	avNbComputerName  = 1
	avNbDomainName    = 2
	avTimestamp       = 7
	avChannelBindings = 10
)

// MessageType returns the type of an NTLMSSP message (1, 2 or 3), or 0.
func MessageType(msg []byte) uint32 {
	if len(msg) < 12 || string(msg[:8]) != Signature {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[8:12])
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		binary.LittleEndian.PutUint16(b[2*i:], r)
	}
	return b
}

func fromUTF16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// Challenge builds a CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) for domain and
// computer, with a fresh 8-byte server challenge.
func Challenge(domain, computer string) (msg []byte, serverChallenge [8]byte) {
	if _, err := rand.Read(serverChallenge[:]); err != nil {
		panic(err)
	}
	var info bytes.Buffer
	av := func(id uint16, v []byte) {
		_ = binary.Write(&info, binary.LittleEndian, id)
		_ = binary.Write(&info, binary.LittleEndian, uint16(len(v)))
		info.Write(v)
	}
	ts := make([]byte, 8)
	binary.LittleEndian.PutUint64(ts, uint64(time.Now().UnixNano()/100)+116444736000000000)
	av(avNbDomainName, utf16le(domain))
	av(avNbComputerName, utf16le(computer))
	av(avTimestamp, ts)
	av(avEOL, nil)

	target := utf16le(domain)
	const headerLen = 48
	var b bytes.Buffer
	b.WriteString(Signature)
	_ = binary.Write(&b, binary.LittleEndian, uint32(2))
	field := func(l, off int) {
		_ = binary.Write(&b, binary.LittleEndian, uint16(l))
		_ = binary.Write(&b, binary.LittleEndian, uint16(l))
		_ = binary.Write(&b, binary.LittleEndian, uint32(off))
	}
	field(len(target), headerLen)
	_ = binary.Write(&b, binary.LittleEndian, uint32(challengeFlags))
	b.Write(serverChallenge[:])
	b.Write(make([]byte, 8)) // reserved
	field(info.Len(), headerLen+len(target))
	b.Write(target)
	b.Write(info.Bytes())
	return b.Bytes(), serverChallenge
}

// ErrBadProof is a wrong password, an unknown user or a proof computed over
// another challenge.
var ErrBadProof = errors.New("ntlm: wrong password or challenge")

// ErrChannelBinding is an AUTHENTICATE_MESSAGE whose channel binding is
// missing or belongs to another TLS channel than the server's own.
var ErrChannelBinding = errors.New("ntlm: the channel binding does not match this server's TLS channel")

// Authenticated is what Verify learned from a good AUTHENTICATE_MESSAGE.
type Authenticated struct {
	Domain, User string
	// ChannelBinding is the MsvAvChannelBindings value the client sent
	// (16 bytes), nil when it sent none.
	ChannelBinding []byte
}

// Name is DOMAIN\user.
func (a Authenticated) Name() string { return a.Domain + `\` + a.User }

// Verify checks an AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3) against the
// server challenge this connection issued and the passwords by lower-case
// user name. On ErrBadProof the returned Authenticated still names the user
// the client claimed.
func Verify(msg []byte, serverChallenge [8]byte, passwords map[string]string) (Authenticated, error) {
	if MessageType(msg) != 3 || len(msg) < 64 {
		return Authenticated{}, errors.New("ntlm: not an AUTHENTICATE message")
	}
	field := func(at int) ([]byte, error) {
		l := int(binary.LittleEndian.Uint16(msg[at:]))
		off := int(binary.LittleEndian.Uint32(msg[at+4:]))
		if off < 0 || l < 0 || off+l > len(msg) {
			return nil, fmt.Errorf("ntlm: field at %d out of bounds", at)
		}
		return msg[off : off+l], nil
	}
	nt, err := field(20)
	if err != nil {
		return Authenticated{}, err
	}
	domainB, err := field(28)
	if err != nil {
		return Authenticated{}, err
	}
	userB, err := field(36)
	if err != nil {
		return Authenticated{}, err
	}
	a := Authenticated{User: fromUTF16le(userB), Domain: fromUTF16le(domainB)}
	password, ok := passwords[strings.ToLower(a.User)]
	if !ok || len(nt) < 16+28 {
		return a, ErrBadProof
	}
	h := md4.New()
	h.Write(utf16le(password))
	ntowf := hmacMD5(h.Sum(nil), utf16le(strings.ToUpper(a.User)+a.Domain))
	proof, blob := nt[:16], nt[16:]
	if !hmac.Equal(proof, hmacMD5(ntowf, serverChallenge[:], blob)) {
		return a, ErrBadProof
	}
	// The proof covers the blob, and so the AV pairs in it: the channel
	// binding is authentic once the proof is.
	a.ChannelBinding = avPair(blob[28:], avChannelBindings)
	return a, nil
}

// avPair returns the value of pair id in an AV_PAIR list, or nil.
func avPair(list []byte, id uint16) []byte {
	for len(list) >= 4 {
		pid := binary.LittleEndian.Uint16(list)
		l := int(binary.LittleEndian.Uint16(list[2:]))
		if pid == avEOL || 4+l > len(list) {
			return nil
		}
		if pid == id {
			return list[4 : 4+l]
		}
		list = list[4+l:]
	}
	return nil
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	m := hmac.New(md5.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// ServerChannelBindings are the MsvAvChannelBindings values a client on
// the server's TLS connection cs may send (RFC 5929, hashed as Windows
// does: the MD5 of a gss_channel_bindings_struct whose application data is
// the binding): tls-server-end-point of leaf, the DER certificate the
// server presented (SHA-256), and, with TLS 1.2, tls-unique.
func ServerChannelBindings(leaf []byte, cs tls.ConnectionState) [][]byte {
	var out [][]byte
	if len(leaf) > 0 {
		sum := sha256.Sum256(leaf)
		out = append(out, gssHash(append([]byte("tls-server-end-point:"), sum[:]...)))
	}
	if len(cs.TLSUnique) > 0 {
		out = append(out, gssHash(append([]byte("tls-unique:"), cs.TLSUnique...)))
	}
	return out
}

// gssHash is the MD5 of a gss_channel_bindings_struct with no addresses
// and app as its application data.
func gssHash(app []byte) []byte {
	b := make([]byte, 20, 20+len(app))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(app)))
	b = append(b, app...)
	sum := md5.Sum(b)
	return sum[:]
}

// CheckChannelBinding returns ErrChannelBinding unless got is one of want.
func CheckChannelBinding(got []byte, want [][]byte) error {
	for _, w := range want {
		if hmac.Equal(got, w) {
			return nil
		}
	}
	return ErrChannelBinding
}
