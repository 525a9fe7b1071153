package test

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/md4"
)

// The server side of NTLMv2 (MS-NLMP), enough for the IIS double to
// authenticate real NTLM clients: it issues a CHALLENGE_MESSAGE and checks
// the AUTHENTICATE_MESSAGE's NTProofStr against a known password. Session
// security (signing, sealing, key exchange) is not offered.

const ntlmSignature = "NTLMSSP\x00"

// Negotiate flags offered in the challenge (MS-NLMP 2.2.2.5): Unicode,
// request target, NTLM, always sign, domain target, extended session
// security, target info. No LM key and no key exchange: NTLMv2 only.
const ntlmChallengeFlags = 0x00000001 | 0x00000004 | 0x00000200 | 0x00008000 | 0x00010000 | 0x00080000 | 0x00800000

// ntlmMessageType returns the type of an NTLMSSP message (1, 2 or 3), or 0.
func ntlmMessageType(msg []byte) uint32 {
	if len(msg) < 12 || string(msg[:8]) != ntlmSignature {
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

// ntlmChallenge builds a CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) for domain
// and computer, with a fresh 8-byte server challenge.
func ntlmChallenge(domain, computer string) (msg []byte, serverChallenge [8]byte) {
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
	av(2, utf16le(domain))   // MsvAvNbDomainName
	av(1, utf16le(computer)) // MsvAvNbComputerName
	av(7, ts)                // MsvAvTimestamp
	av(0, nil)               // MsvAvEOL

	target := utf16le(domain)
	const headerLen = 48
	var b bytes.Buffer
	b.WriteString(ntlmSignature)
	_ = binary.Write(&b, binary.LittleEndian, uint32(2))
	field := func(l, off int) {
		_ = binary.Write(&b, binary.LittleEndian, uint16(l))
		_ = binary.Write(&b, binary.LittleEndian, uint16(l))
		_ = binary.Write(&b, binary.LittleEndian, uint32(off))
	}
	field(len(target), headerLen)
	_ = binary.Write(&b, binary.LittleEndian, uint32(ntlmChallengeFlags))
	b.Write(serverChallenge[:])
	b.Write(make([]byte, 8)) // reserved
	field(info.Len(), headerLen+len(target))
	b.Write(target)
	b.Write(info.Bytes())
	return b.Bytes(), serverChallenge
}

var errNTLMBadProof = errors.New("ntlm: wrong password or challenge")

// ntlmVerify checks an AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3) against the
// server challenge this connection issued, and returns "DOMAIN\user".
func ntlmVerify(msg []byte, serverChallenge [8]byte, passwords map[string]string) (string, error) {
	if ntlmMessageType(msg) != 3 || len(msg) < 64 {
		return "", errors.New("ntlm: not an AUTHENTICATE message")
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
		return "", err
	}
	domainB, err := field(28)
	if err != nil {
		return "", err
	}
	userB, err := field(36)
	if err != nil {
		return "", err
	}
	user, domain := fromUTF16le(userB), fromUTF16le(domainB)
	password, ok := passwords[strings.ToLower(user)]
	if !ok || len(nt) < 16+28 {
		return "", errNTLMBadProof
	}
	h := md4.New()
	h.Write(utf16le(password))
	ntowf := hmacMD5(h.Sum(nil), utf16le(strings.ToUpper(user)+domain))
	proof, blob := nt[:16], nt[16:]
	if !hmac.Equal(proof, hmacMD5(ntowf, serverChallenge[:], blob)) {
		return "", errNTLMBadProof
	}
	return domain + `\` + user, nil
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	m := hmac.New(md5.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}
