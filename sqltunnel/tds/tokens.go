package tds

import (
	"encoding/binary"
	"fmt"
)

// TokenType is the first byte of a token in a server token stream (MS-TDS
// 2.2.7).
type TokenType uint8

// Token types. The scanner can size those marked "sized"; the others need
// column metadata and stop it with an *UnsupportedTokenError.
const (
	TokenOffset        TokenType = 0x78 // sized: 4 bytes
	TokenReturnStatus  TokenType = 0x79 // sized: 4 bytes
	TokenColMetadata   TokenType = 0x81
	TokenAltMetadata   TokenType = 0x88
	TokenDataClass     TokenType = 0xA3
	TokenTabName       TokenType = 0xA4 // sized: USHORT length
	TokenColInfo       TokenType = 0xA5 // sized: USHORT length
	TokenOrder         TokenType = 0xA9 // sized: USHORT length
	TokenError         TokenType = 0xAA // sized: USHORT length
	TokenInfo          TokenType = 0xAB // sized: USHORT length
	TokenReturnValue   TokenType = 0xAC
	TokenLoginAck      TokenType = 0xAD // sized: USHORT length
	TokenFeatureExtAck TokenType = 0xAE // sized: options up to 0xFF
	TokenRow           TokenType = 0xD1
	TokenNBCRow        TokenType = 0xD2
	TokenAltRow        TokenType = 0xD3
	TokenEnvChange     TokenType = 0xE3 // sized: USHORT length
	TokenSessionState  TokenType = 0xE4 // sized: DWORD length
	TokenSSPI          TokenType = 0xED // sized: USHORT length
	TokenFedAuthInfo   TokenType = 0xEE // sized: DWORD length
	TokenDone          TokenType = 0xFD // sized: 12 bytes (8 before TDS 7.2)
	TokenDoneProc      TokenType = 0xFE // sized: like DONE
	TokenDoneInProc    TokenType = 0xFF // sized: like DONE
)

var tokenNames = map[TokenType]string{
	TokenOffset: "OFFSET", TokenReturnStatus: "RETURNSTATUS", TokenColMetadata: "COLMETADATA",
	TokenAltMetadata: "ALTMETADATA", TokenDataClass: "DATACLASSIFICATION", TokenTabName: "TABNAME",
	TokenColInfo: "COLINFO", TokenOrder: "ORDER", TokenError: "ERROR", TokenInfo: "INFO",
	TokenReturnValue: "RETURNVALUE", TokenLoginAck: "LOGINACK", TokenFeatureExtAck: "FEATUREEXTACK",
	TokenRow: "ROW", TokenNBCRow: "NBCROW", TokenAltRow: "ALTROW", TokenEnvChange: "ENVCHANGE",
	TokenSessionState: "SESSIONSTATE", TokenSSPI: "SSPI", TokenFedAuthInfo: "FEDAUTHINFO",
	TokenDone: "DONE", TokenDoneProc: "DONEPROC", TokenDoneInProc: "DONEINPROC",
}

func (t TokenType) String() string {
	if s, ok := tokenNames[t]; ok {
		return s
	}
	return fmt.Sprintf("TokenType(0x%02X)", uint8(t))
}

// Token is one token of a stream: its type and its complete bytes, type
// byte and length prefix included, aliasing the scanned stream. Pass Raw to
// ParseLoginAck, ParseEnvChange, ParseErrorInfo, ParseDone or
// ParseFeatureExtAck, or copy it unchanged into a ReplyBuilder.
type Token struct {
	Type TokenType // equal to Raw[0]
	Raw  []byte    // the whole token; never empty for a scanned token
}

// TokenScanner splits a server token stream (the payload of a reply
// message) into tokens, in the style of bufio.Scanner:
//
//	s := tds.NewTokenScanner(msg.Payload, 0)
//	for s.Scan() {
//		tok := s.Token()
//		...
//	}
//	if err := s.Err(); err != nil { ... }
//
// It only sizes tokens; it does not validate their contents. It sizes the
// tokens of a login reply and a few more (see the TokenType constants); on
// any other token it stops with an *UnsupportedTokenError, and on a token
// running past the end of the stream with ErrTruncated.
//
// The zero value scans nothing; use NewTokenScanner.
//
// ENVCHANGE is sized by its length field. MS-TDS 2.2.7.9 says type 15
// (promote transaction) understates it; that type answers transaction
// manager requests only and is not handled specially.
type TokenScanner struct {
	b     []byte
	off   int
	ver   TDSVersion
	tok   Token
	err   error
	ended bool
}

// NewTokenScanner returns a scanner over stream. ver selects the DONE size:
// TDS 7.0/7.1 use a 4-byte row count, everything else (including 0) the
// 8-byte one. A LOGINACK in the stream replaces ver with the version it
// announces, which governs the tokens after it.
func NewTokenScanner(stream []byte, ver TDSVersion) *TokenScanner {
	return &TokenScanner{b: stream, ver: ver}
}

// Scan advances to the next token and reports whether there is one. It
// returns false at the end of the stream or on error; Err tells which.
func (s *TokenScanner) Scan() bool {
	if s.ended || s.off >= len(s.b) {
		s.ended = true
		return false
	}
	n, err := s.size()
	if err != nil {
		s.err, s.ended = err, true
		return false
	}
	raw := s.b[s.off : s.off+n : s.off+n]
	s.tok = Token{Type: TokenType(raw[0]), Raw: raw}
	if s.tok.Type == TokenLoginAck && len(raw) >= 8 {
		s.ver = TDSVersion(binary.BigEndian.Uint32(raw[4:]))
	}
	s.off += n
	return true
}

// Token returns the token found by the last successful Scan.
func (s *TokenScanner) Token() Token { return s.tok }

// Offset returns the offset in the stream of the next token to scan.
func (s *TokenScanner) Offset() int { return s.off }

// Err returns the error that stopped the scanner, or nil at the end of the
// stream.
func (s *TokenScanner) Err() error { return s.err }

// size returns the length of the token at s.off, which lies within s.b.
func (s *TokenScanner) size() (int, error) {
	rest := s.b[s.off:]
	typ := TokenType(rest[0])
	var n uint64 // widened: DWORD lengths plus the prefix cannot overflow
	switch typ {
	case TokenOffset, TokenReturnStatus:
		n = 1 + 4
	case TokenDone, TokenDoneProc, TokenDoneInProc:
		n = 1 + 2 + 2 + 8
		if s.ver.Pre72() {
			n = 1 + 2 + 2 + 4
		}
	case TokenTabName, TokenColInfo, TokenOrder, TokenError, TokenInfo, TokenLoginAck, TokenEnvChange, TokenSSPI:
		if len(rest) < 3 {
			return 0, s.truncated(typ)
		}
		n = 3 + uint64(binary.LittleEndian.Uint16(rest[1:]))
	case TokenSessionState, TokenFedAuthInfo:
		if len(rest) < 5 {
			return 0, s.truncated(typ)
		}
		n = 5 + uint64(binary.LittleEndian.Uint32(rest[1:]))
	case TokenFeatureExtAck:
		return s.featureExtAckSize(rest)
	default:
		return 0, &UnsupportedTokenError{Type: typ, Offset: s.off}
	}
	if n > uint64(len(rest)) {
		return 0, s.truncated(typ)
	}
	return int(n), nil
}

// featureExtAckSize walks FeatureAckOpt entries (id, DWORD length, data) up
// to the 0xFF terminator.
func (s *TokenScanner) featureExtAckSize(rest []byte) (int, error) {
	at := 1
	for {
		if at >= len(rest) {
			return 0, fmt.Errorf("tds: token stream: FEATUREEXTACK at offset %d: %w", s.off, ErrNoTerminator)
		}
		if FeatureID(rest[at]) == FeatureTerminator {
			return at + 1, nil
		}
		if len(rest)-at < 5 {
			return 0, s.truncated(TokenFeatureExtAck)
		}
		n := uint64(binary.LittleEndian.Uint32(rest[at+1:]))
		if n > uint64(len(rest)-at-5) {
			return 0, s.truncated(TokenFeatureExtAck)
		}
		at += 5 + int(n)
	}
}

func (s *TokenScanner) truncated(t TokenType) error {
	return fmt.Errorf("tds: token stream: %s at offset %d: %w", t, s.off, ErrTruncated)
}
