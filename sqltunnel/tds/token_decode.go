package tds

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// ErrorInfo is the body of an ERROR (0xAA) or INFO (0xAB) token (MS-TDS
// 2.2.7.10, 2.2.7.13); the token type tells which.
type ErrorInfo struct {
	Number     int32  // message number, e.g. 18456 for a failed login
	State      uint8  // modifier of Number
	Class      uint8  // severity: < 10 informational, >= 20 fatal to the connection
	Message    string // MsgText
	ServerName string // server that raised the message; may be empty
	ProcName   string // stored procedure that raised it; may be empty
	LineNumber int32  // 0 when not applicable; 16 bits wide before TDS 7.2
}

func (e ErrorInfo) String() string {
	return fmt.Sprintf("msg %d, level %d, state %d: %s", e.Number, e.Class, e.State, e.Message)
}

// LoginAck is the body of a LOGINACK (0xAD) token (MS-TDS 2.2.7.14).
type LoginAck struct {
	Interface uint8 // 0 SQL_DFLT, 1 SQL_TSQL
	// TDSVersion is the negotiated version; LOGINACK carries it big-endian,
	// unlike LOGIN7 (see the examples in MS-TDS 4.2 and 4.4).
	TDSVersion TDSVersion
	ProgName   string // as sent, often with trailing NULs
	// ProgVersion is the server version: major, minor and build
	// (BuildNumHi<<8 | BuildNumLow); SubBuild is not carried.
	ProgVersion Version
}

// DoneStatus is the Status bit field of DONE, DONEPROC and DONEINPROC.
type DoneStatus uint16

// DONE status bits (MS-TDS 2.2.7.6); DoneFinal is the absence of them all.
const (
	DoneFinal      DoneStatus = 0x0000
	DoneMore       DoneStatus = 0x0001
	DoneError      DoneStatus = 0x0002
	DoneInXact     DoneStatus = 0x0004
	DoneCount      DoneStatus = 0x0010
	DoneAttn       DoneStatus = 0x0020 // acknowledges an attention
	DoneRPCInBatch DoneStatus = 0x0080
	DoneSrvError   DoneStatus = 0x0100
)

// Done is a DONE, DONEPROC or DONEINPROC token.
type Done struct {
	// Token is TokenDone, TokenDoneProc or TokenDoneInProc; 0 means
	// TokenDone when encoding.
	Token    TokenType
	Status   DoneStatus // DoneFinal (0) ends the reply
	CurCmd   uint16     // token of the current statement; opaque to TDS
	RowCount uint64     // valid when Status has DoneCount; 32 bits before TDS 7.2
}

// EnvChangeType is the type of an ENVCHANGE token (MS-TDS 2.2.7.9).
type EnvChangeType uint8

// ENVCHANGE types.
const (
	EnvDatabase        EnvChangeType = 1
	EnvLanguage        EnvChangeType = 2
	EnvCharset         EnvChangeType = 3
	EnvPacketSize      EnvChangeType = 4
	EnvSortLocale      EnvChangeType = 5
	EnvSortFlags       EnvChangeType = 6
	EnvCollation       EnvChangeType = 7
	EnvBeginTran       EnvChangeType = 8
	EnvCommitTran      EnvChangeType = 9
	EnvRollbackTran    EnvChangeType = 10
	EnvEnlistDTC       EnvChangeType = 11
	EnvDefectTran      EnvChangeType = 12
	EnvMirrorPartner   EnvChangeType = 13
	EnvPromoteTran     EnvChangeType = 15
	EnvTranMgrAddr     EnvChangeType = 16
	EnvTranEnded       EnvChangeType = 17
	EnvResetAck        EnvChangeType = 18
	EnvUserInstance    EnvChangeType = 19
	EnvRouting         EnvChangeType = 20
	EnvEnhancedRouting EnvChangeType = 21
)

// envStringTypes has bit t set for each ENVCHANGE type t whose new and old
// values are B_VARCHAR.
const envStringTypes uint32 = 1<<EnvDatabase | 1<<EnvLanguage | 1<<EnvCharset | 1<<EnvPacketSize |
	1<<EnvSortLocale | 1<<EnvSortFlags | 1<<EnvMirrorPartner | 1<<EnvUserInstance

// EnvChange is an ENVCHANGE token: its type and the value data after the
// type byte, aliasing the token. Use the accessor matching Type.
type EnvChange struct {
	Type EnvChangeType // which environment value changed
	Data []byte        // EnvValueData after the type byte: new value, then old value
}

// Routing is the value of a routing ENVCHANGE: type 20, or type 21
// (enhanced routing, which adds a database). Azure SQL redirection and
// read-only routing send it after LOGINACK; a client that follows it
// connects to Server:Port directly.
type Routing struct {
	Enhanced bool   // type 21 instead of 20
	Protocol uint8  // must be 0 (TCP)
	Port     uint16 // ProtocolProperty: the TCP port; 0 is not allowed
	Server   string // AlternateServer
	Database string // AlternateDatabase; type 21 only
}

// FeatureAck is one option of a FEATUREEXTACK token.
type FeatureAck struct {
	ID   FeatureID // feature acknowledged; must not be FeatureTerminator
	Data []byte    // FeatureAckData; nil is empty
}

// tokenBody checks that raw is one whole token of type want with a USHORT
// length prefix and returns a cursor over its body.
func tokenBody(raw []byte, want TokenType) (*cursor, error) {
	if len(raw) < 3 {
		return nil, fmt.Errorf("tds: %s: %d bytes: %w", want, len(raw), ErrTruncated)
	}
	if TokenType(raw[0]) != want {
		return nil, fmt.Errorf("tds: %s: got %s: %w", want, TokenType(raw[0]), ErrWrongToken)
	}
	if n := int(binary.LittleEndian.Uint16(raw[1:])); n != len(raw)-3 {
		return nil, fmt.Errorf("tds: %s: length %d, token has %d bytes: %w", want, n, len(raw)-3, ErrMalformed)
	}
	return &cursor{b: raw[3:]}, nil
}

// ParseErrorInfo decodes an ERROR or INFO token (raw as returned by
// TokenScanner, type byte included). The line number is read as 32 or 16
// bits, whichever the token length leaves.
func ParseErrorInfo(raw []byte) (ErrorInfo, error) {
	want := TokenError
	if len(raw) > 0 && TokenType(raw[0]) == TokenInfo {
		want = TokenInfo
	}
	c, err := tokenBody(raw, want)
	if err != nil {
		return ErrorInfo{}, err
	}
	e := ErrorInfo{
		Number:     int32(c.u32()),
		State:      c.u8(),
		Class:      c.u8(),
		Message:    c.usVarChar(),
		ServerName: c.bVarChar(),
		ProcName:   c.bVarChar(),
	}
	switch len(c.b) - c.off {
	case 4:
		e.LineNumber = int32(c.u32())
	case 2:
		e.LineNumber = int32(c.u16())
	default:
		if c.err == nil {
			return ErrorInfo{}, fmt.Errorf("tds: %s: %d bytes left for the line number: %w", want, len(c.b)-c.off, ErrMalformed)
		}
	}
	if err := c.done(); err != nil {
		return ErrorInfo{}, fmt.Errorf("tds: %s: %w", want, err)
	}
	return e, nil
}

// ParseLoginAck decodes a LOGINACK token.
func ParseLoginAck(raw []byte) (LoginAck, error) {
	c, err := tokenBody(raw, TokenLoginAck)
	if err != nil {
		return LoginAck{}, err
	}
	a := LoginAck{Interface: c.u8()}
	if v := c.take(4); v != nil {
		a.TDSVersion = TDSVersion(binary.BigEndian.Uint32(v))
	}
	a.ProgName = c.bVarChar()
	if v := c.take(4); v != nil {
		a.ProgVersion = Version{Major: v[0], Minor: v[1], Build: binary.BigEndian.Uint16(v[2:])}
	}
	if err := c.done(); err != nil {
		return LoginAck{}, fmt.Errorf("tds: LOGINACK: %w", err)
	}
	return a, nil
}

// ParseDone decodes a DONE, DONEPROC or DONEINPROC token of 13 bytes (TDS
// 7.2 and later) or 9 bytes (TDS 7.0/7.1).
func ParseDone(raw []byte) (Done, error) {
	if len(raw) == 0 {
		return Done{}, fmt.Errorf("tds: DONE: empty: %w", ErrTruncated)
	}
	d := Done{Token: TokenType(raw[0])}
	switch d.Token {
	case TokenDone, TokenDoneProc, TokenDoneInProc:
	default:
		return Done{}, fmt.Errorf("tds: DONE: got %s: %w", d.Token, ErrWrongToken)
	}
	if len(raw) != 13 && len(raw) != 9 {
		return Done{}, fmt.Errorf("tds: %s: %d bytes, want 13 or 9: %w", d.Token, len(raw), ErrMalformed)
	}
	d.Status = DoneStatus(binary.LittleEndian.Uint16(raw[1:]))
	d.CurCmd = binary.LittleEndian.Uint16(raw[3:])
	if len(raw) == 13 {
		d.RowCount = binary.LittleEndian.Uint64(raw[5:])
	} else {
		d.RowCount = uint64(binary.LittleEndian.Uint32(raw[5:]))
	}
	return d, nil
}

// ParseEnvChange decodes the type of an ENVCHANGE token; the value is decoded
// by the accessor matching the type.
func ParseEnvChange(raw []byte) (EnvChange, error) {
	c, err := tokenBody(raw, TokenEnvChange)
	if err != nil {
		return EnvChange{}, err
	}
	typ := EnvChangeType(c.u8())
	if c.err != nil {
		return EnvChange{}, fmt.Errorf("tds: ENVCHANGE: no type: %w", ErrTruncated)
	}
	return EnvChange{Type: typ, Data: c.rest()}, nil
}

// Strings decodes the new and old values of the types whose values are
// B_VARCHAR strings: database, language, charset, packet size, sort locale
// and flags, mirror partner and user instance.
func (e EnvChange) Strings() (newValue, oldValue string, err error) {
	if envStringTypes&(uint32(1)<<e.Type) == 0 { // shifts past 31 give 0
		return "", "", fmt.Errorf("tds: ENVCHANGE type %d is not a string change: %w", e.Type, ErrWrongToken)
	}
	c := cursor{b: e.Data}
	newValue, oldValue = c.bVarChar(), c.bVarChar()
	if err := c.done(); err != nil {
		return "", "", fmt.Errorf("tds: ENVCHANGE type %d: %w", e.Type, err)
	}
	return newValue, oldValue, nil
}

// PacketSize decodes the new packet size of a type 4 ENVCHANGE (a decimal
// string). A value outside MinPacketSize..MaxPacketSize is ErrMalformed.
func (e EnvChange) PacketSize() (int, error) {
	if e.Type != EnvPacketSize {
		return 0, fmt.Errorf("tds: ENVCHANGE type %d is not a packet size: %w", e.Type, ErrWrongToken)
	}
	v, _, err := e.Strings()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < MinPacketSize || n > MaxPacketSize {
		return 0, fmt.Errorf("tds: ENVCHANGE packet size %q: %w", v, ErrMalformed)
	}
	return n, nil
}

// Collation decodes the new and old SQL collations (B_VARBYTE, normally 5
// bytes, the old one often empty) of a type 7 ENVCHANGE. The slices alias
// the token.
func (e EnvChange) Collation() (newValue, oldValue []byte, err error) {
	if e.Type != EnvCollation {
		return nil, nil, fmt.Errorf("tds: ENVCHANGE type %d is not a collation: %w", e.Type, ErrWrongToken)
	}
	c := cursor{b: e.Data}
	newValue = c.take(int(c.u8()))
	oldValue = c.take(int(c.u8()))
	if err := c.done(); err != nil {
		return nil, nil, fmt.Errorf("tds: ENVCHANGE collation: %w", err)
	}
	return newValue, oldValue, nil
}

// Routing decodes a type 20 or 21 ENVCHANGE. The old value must be the
// empty USHORT length MS-TDS prescribes.
func (e EnvChange) Routing() (Routing, error) {
	if e.Type != EnvRouting && e.Type != EnvEnhancedRouting {
		return Routing{}, fmt.Errorf("tds: ENVCHANGE type %d is not routing: %w", e.Type, ErrWrongToken)
	}
	c := cursor{b: e.Data}
	n := int(c.u16()) // RoutingDataValueLength
	v := cursor{b: c.take(n)}
	if old := c.u16(); old != 0 {
		return Routing{}, fmt.Errorf("tds: ENVCHANGE routing: old value length %d: %w", old, ErrMalformed)
	}
	if err := c.done(); err != nil {
		return Routing{}, fmt.Errorf("tds: ENVCHANGE routing: %w", err)
	}
	r := Routing{Enhanced: e.Type == EnvEnhancedRouting, Protocol: v.u8(), Port: v.u16(), Server: v.usVarChar()}
	if r.Enhanced {
		r.Database = v.usVarChar()
	}
	if err := v.done(); err != nil {
		return Routing{}, fmt.Errorf("tds: ENVCHANGE routing value: %w", err)
	}
	return r, nil
}

// ParseFeatureExtAck decodes a FEATUREEXTACK token. The Data slices alias
// raw.
func ParseFeatureExtAck(raw []byte) ([]FeatureAck, error) {
	if len(raw) == 0 || TokenType(raw[0]) != TokenFeatureExtAck {
		return nil, fmt.Errorf("tds: FEATUREEXTACK: %w", ErrWrongToken)
	}
	c := cursor{b: raw[1:]}
	acks := []FeatureAck{}
	for {
		id := FeatureID(c.u8())
		if c.err != nil {
			return nil, fmt.Errorf("tds: FEATUREEXTACK: %w", ErrNoTerminator)
		}
		if id == FeatureTerminator {
			break
		}
		n := c.u32()
		if c.err == nil && uint64(n) > uint64(len(c.b)-c.off) {
			c.err = ErrTruncated
		}
		d := c.take(int(n))
		if c.err != nil {
			return nil, fmt.Errorf("tds: FEATUREEXTACK feature 0x%02X: %w", uint8(id), c.err)
		}
		acks = append(acks, FeatureAck{ID: id, Data: d})
	}
	if err := c.done(); err != nil {
		return nil, fmt.Errorf("tds: FEATUREEXTACK: %w", err)
	}
	return acks, nil
}
