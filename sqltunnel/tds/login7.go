package tds

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// LOGIN7 flag bits this package names (MS-TDS 2.2.6.4).
const (
	// OptionFlags2IntegratedSecurity (fIntSecurity): the client
	// authenticates with SSPI (NTLM or Kerberos).
	OptionFlags2IntegratedSecurity uint8 = 0x80
	// TypeFlagsReadOnlyIntent (fReadOnlyIntent): ApplicationIntent=ReadOnly.
	TypeFlagsReadOnlyIntent uint8 = 0x20
	// OptionFlags3ChangePassword (fChangePassword): the login changes the
	// password.
	OptionFlags3ChangePassword uint8 = 0x01
	// OptionFlags3Extension (fExtension): ibExtension points to a
	// FeatureExt block.
	OptionFlags3Extension uint8 = 0x10
)

// FeatureID identifies a LOGIN7 FeatureExt option and its FEATUREEXTACK
// (MS-TDS 2.2.6.4, 2.2.7.11).
type FeatureID uint8

// Feature ids.
const (
	FeatureSessionRecovery        FeatureID = 0x01
	FeatureFedAuth                FeatureID = 0x02
	FeatureColumnEncryption       FeatureID = 0x04
	FeatureGlobalTransactions     FeatureID = 0x05
	FeatureAzureSQLSupport        FeatureID = 0x08
	FeatureDataClassification     FeatureID = 0x09
	FeatureUTF8Support            FeatureID = 0x0A
	FeatureAzureSQLDNSCaching     FeatureID = 0x0B
	FeatureJSONSupport            FeatureID = 0x0D
	FeatureVectorSupport          FeatureID = 0x0E
	FeatureEnhancedRoutingSupport FeatureID = 0x0F
	FeatureTerminator             FeatureID = 0xFF
)

// Login7 offsets (from the start of the LOGIN7 payload).
const (
	login7FixedLen   = 94 // TDS 7.2 and later
	login7FixedLen71 = 86 // TDS 7.0 and 7.1: no change password, no cbSSPILong
	offHostName      = 36
	offUserName      = 40
	offPassword      = 44
	offAppName       = 48
	offServerName    = 52
	offExtension     = 56
	offCltIntName    = 60
	offLanguage      = 64
	offDatabase      = 68
	offClientID      = 72
	offSSPI          = 78
	offAtchDBFile    = 82
	offChangePass    = 86
	offSSPILong      = 90
)

// AuthMethod is how a LOGIN7 authenticates.
type AuthMethod uint8

// Authentication methods, as derived by Login7.Auth.
const (
	AuthNone       AuthMethod = iota // no password, SSPI or FedAuth: the server will refuse it
	AuthSQL                          // SQL Server login: user name and password
	AuthIntegrated                   // SSPI (NTLM/Kerberos), fIntSecurity set
	AuthFedAuth                      // federated authentication FeatureExt (Entra ID token)
)

func (a AuthMethod) String() string {
	switch a {
	case AuthSQL:
		return "sql"
	case AuthIntegrated:
		return "integrated"
	case AuthFedAuth:
		return "fedauth"
	}
	return "none"
}

// Login7 holds the fields of a LOGIN7 message that are safe to log. The
// password, the new password and the SSPI blob are never decoded: only
// whether they are present (and the SSPI length) is known, so a Login7 can
// be logged whole, with %v or field by field. The zero value is an empty
// login.
type Login7 struct {
	Length         uint32     // total length of the LOGIN7 structure, FeatureExt included
	TDSVersion     TDSVersion // highest version the client speaks
	PacketSize     uint32     // requested packet size; 0 means "server default"
	ClientProgVer  uint32     // version of the client interface library
	ClientPID      uint32     // client process id
	ConnectionID   uint32     // 0 except when reconnecting to a partner server
	OptionFlags1   uint8      // byte order, charset, float, dump/load, use-db, init-db, set-lang bits
	OptionFlags2   uint8      // OptionFlags2IntegratedSecurity, ODBC, user type, init-lang bits
	TypeFlags      uint8      // SQL type, OLEDB, TypeFlagsReadOnlyIntent
	OptionFlags3   uint8      // OptionFlags3ChangePassword, OptionFlags3Extension, ...; 0 before TDS 7.2
	ClientTimeZone int32      // unused by servers
	ClientLCID     uint32     // client collation LCID; ignored by servers

	HostName     string  // client machine name
	UserName     string  // SQL login name; empty for integrated and FedAuth logins
	AppName      string  // application name
	ServerName   string  // the server name the client was told to use, possibly host\instance
	Library      string  // CltIntName: the client interface library, e.g. "go-mssqldb", "ODBC"
	Language     string  // initial language; empty means the login's default
	Database     string  // initial database; empty means the login's default
	AttachDBFile string  // file name of a database to attach
	ClientID     [6]byte // usually a MAC address

	HasPassword       bool // a password is present (its content is never decoded)
	HasChangePassword bool // a new password is present (TDS 7.2+; never decoded)
	HasSSPI           bool // an SSPI blob is present (never decoded)
	SSPILen           int  // SSPI blob length in bytes (cbSSPI, or cbSSPILong when cbSSPI is 0xFFFF)

	// Features lists the FeatureExt feature ids in order (without their
	// data, which for FeatureFedAuth holds the token); nil when the login
	// has no FeatureExt block.
	Features []FeatureID
}

// IntegratedSecurity reports fIntSecurity (OptionFlags2 0x80).
func (l *Login7) IntegratedSecurity() bool {
	return l.OptionFlags2&OptionFlags2IntegratedSecurity != 0
}

// ReadOnlyIntent reports fReadOnlyIntent (TypeFlags 0x20).
func (l *Login7) ReadOnlyIntent() bool { return l.TypeFlags&TypeFlagsReadOnlyIntent != 0 }

// HasFeatureExt reports fExtension (OptionFlags3 0x10).
func (l *Login7) HasFeatureExt() bool { return l.OptionFlags3&OptionFlags3Extension != 0 }

// HasFeature reports whether the FeatureExt block lists id.
func (l *Login7) HasFeature(id FeatureID) bool {
	for _, f := range l.Features {
		if f == id {
			return true
		}
	}
	return false
}

// Auth derives the authentication method: FedAuth if the FEDAUTH feature is
// present, else integrated if fIntSecurity is set or an SSPI blob is sent,
// else SQL if a user name or password is sent.
func (l *Login7) Auth() AuthMethod {
	switch {
	case l.HasFeature(FeatureFedAuth):
		return AuthFedAuth
	case l.IntegratedSecurity() || l.HasSSPI:
		return AuthIntegrated
	case l.UserName != "" || l.HasPassword:
		return AuthSQL
	}
	return AuthNone
}

// String renders the safe fields as space-separated key=value pairs.
func (l *Login7) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "tds_version=%s packet_size=%d auth=%s user=%q host=%q app=%q server=%q library=%q database=%q language=%q",
		l.TDSVersion, l.PacketSize, l.Auth(), l.UserName, l.HostName, l.AppName, l.ServerName, l.Library, l.Database, l.Language)
	fmt.Fprintf(&sb, " read_only=%t has_password=%t has_sspi=%t sspi_len=%d change_password=%t",
		l.ReadOnlyIntent(), l.HasPassword, l.HasSSPI, l.SSPILen, l.HasChangePassword)
	if l.Features != nil {
		sb.WriteString(" features=")
		for i, f := range l.Features {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "0x%02X", uint8(f))
		}
	}
	return sb.String()
}

// login7Layout checks the fixed part of a LOGIN7 payload and returns the
// payload truncated to its Length field and the size of the fixed part.
func login7Layout(b []byte) ([]byte, int, error) {
	if len(b) < login7FixedLen71 {
		return nil, 0, fmt.Errorf("tds: login7: %d bytes: %w", len(b), ErrTruncated)
	}
	length := binary.LittleEndian.Uint32(b[0:])
	if uint64(length) > uint64(len(b)) {
		return nil, 0, fmt.Errorf("tds: login7: length field %d > %d bytes: %w", length, len(b), ErrTruncated)
	}
	fixed := login7FixedLen
	if TDSVersion(binary.LittleEndian.Uint32(b[4:])).Pre72() {
		fixed = login7FixedLen71
	}
	if int(length) < fixed {
		return nil, 0, fmt.Errorf("tds: login7: length field %d < fixed part %d: %w", length, fixed, ErrTruncated)
	}
	return b[:length], fixed, nil
}

// login7Field returns the data of the (offset, length) pair at off in the
// fixed part; unit is 2 for character counts and 1 for byte counts. The
// data must lie between the fixed part and the end of the structure. A zero
// length returns nil without looking at the offset (MS-TDS 2.2.6.4).
func login7Field(b []byte, fixed, off, unit int, name string) ([]byte, error) {
	return login7Range(b, fixed, int(binary.LittleEndian.Uint16(b[off:])), unit*int(binary.LittleEndian.Uint16(b[off+2:])), name)
}

func login7Range(b []byte, fixed, start, n int, name string) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if start < fixed || n > len(b)-start {
		return nil, fmt.Errorf("tds: login7: %s at %d+%d outside %d..%d: %w", name, start, n, fixed, len(b), ErrOutOfRange)
	}
	return b[start : start+n : start+n], nil
}

// ParseLogin7 decodes the safe fields of a LOGIN7 message payload (the
// reassembled message, which may span packets). Every (offset, length) pair,
// including those of the password, change-password and SSPI fields, is
// checked to lie within the structure, whose size is the Length field
// (ErrTruncated if the payload is shorter, ErrOutOfRange for a field outside
// it). TDS 7.0/7.1 logins have the shorter 86-byte fixed part. The result
// does not alias payload.
func ParseLogin7(payload []byte) (*Login7, error) {
	b, fixed, err := login7Layout(payload)
	if err != nil {
		return nil, err
	}
	l := &Login7{
		Length:         uint32(len(b)),
		TDSVersion:     TDSVersion(binary.LittleEndian.Uint32(b[4:])),
		PacketSize:     binary.LittleEndian.Uint32(b[8:]),
		ClientProgVer:  binary.LittleEndian.Uint32(b[12:]),
		ClientPID:      binary.LittleEndian.Uint32(b[16:]),
		ConnectionID:   binary.LittleEndian.Uint32(b[20:]),
		OptionFlags1:   b[24],
		OptionFlags2:   b[25],
		TypeFlags:      b[26],
		OptionFlags3:   b[27],
		ClientTimeZone: int32(binary.LittleEndian.Uint32(b[28:])),
		ClientLCID:     binary.LittleEndian.Uint32(b[32:]),
		ClientID:       [6]byte(b[offClientID : offClientID+6]),
	}
	strs := []struct {
		off  int
		name string
		dst  *string
	}{
		{offHostName, "HostName", &l.HostName},
		{offUserName, "UserName", &l.UserName},
		{offAppName, "AppName", &l.AppName},
		{offServerName, "ServerName", &l.ServerName},
		{offCltIntName, "CltIntName", &l.Library},
		{offLanguage, "Language", &l.Language},
		{offDatabase, "Database", &l.Database},
		{offAtchDBFile, "AtchDBFile", &l.AttachDBFile},
	}
	for _, s := range strs {
		d, err := login7Field(b, fixed, s.off, 2, s.name)
		if err != nil {
			return nil, err
		}
		if *s.dst, err = decodeUCS2(d); err != nil {
			return nil, fmt.Errorf("tds: login7: %s: %w", s.name, err)
		}
	}

	// Secrets: bounds only, never the contents.
	pw, err := login7Field(b, fixed, offPassword, 2, "Password")
	if err != nil {
		return nil, err
	}
	l.HasPassword = len(pw) > 0
	if fixed == login7FixedLen {
		cp, err := login7Field(b, fixed, offChangePass, 2, "ChangePassword")
		if err != nil {
			return nil, err
		}
		l.HasChangePassword = len(cp) > 0
	}
	sspiLen := int64(binary.LittleEndian.Uint16(b[offSSPI+2:]))
	if sspiLen == 0xFFFF && fixed == login7FixedLen {
		// MS-TDS 2.2.6.4: cbSSPI == USHORT_MAX defers to cbSSPILong when
		// that is non-zero.
		if long := binary.LittleEndian.Uint32(b[offSSPILong:]); long > 0 {
			sspiLen = int64(long)
		}
	}
	if sspiLen > int64(len(b)) {
		return nil, fmt.Errorf("tds: login7: SSPI length %d > %d bytes: %w", sspiLen, len(b), ErrOutOfRange)
	}
	sspi, err := login7Range(b, fixed, int(binary.LittleEndian.Uint16(b[offSSPI:])), int(sspiLen), "SSPI")
	if err != nil {
		return nil, err
	}
	l.HasSSPI, l.SSPILen = len(sspi) > 0, len(sspi)

	if l.HasFeatureExt() && fixed == login7FixedLen {
		if l.Features, err = login7Features(b, fixed); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// login7Features walks the FeatureExt block that ibExtension points to and
// returns the feature ids, checking every FeatureDataLen against the
// structure.
func login7Features(b []byte, fixed int) ([]FeatureID, error) {
	// With fExtension set, ibUnused/cbUnused are ibExtension/cbExtension,
	// in bytes; the extension starts with the DWORD ibFeatureExtLong.
	ext, err := login7Field(b, fixed, offExtension, 1, "Extension")
	if err != nil {
		return nil, err
	}
	if len(ext) < 4 {
		return nil, fmt.Errorf("tds: login7: Extension of %d bytes: %w", len(ext), ErrMalformed)
	}
	at := binary.LittleEndian.Uint32(ext)
	if at == 0 {
		return nil, nil // ibFeatureExtLong 0: no FeatureExt block
	}
	if at < uint32(fixed) || uint64(at) >= uint64(len(b)) {
		return nil, fmt.Errorf("tds: login7: FeatureExt at %d outside %d..%d: %w", at, fixed, len(b), ErrOutOfRange)
	}
	c := cursor{b: b, off: int(at)}
	ids := []FeatureID{}
	for {
		id := FeatureID(c.u8())
		if c.err != nil {
			return nil, fmt.Errorf("tds: login7: FeatureExt: %w", ErrNoTerminator)
		}
		if id == FeatureTerminator {
			return ids, nil
		}
		n := c.u32()
		if c.err == nil && uint64(n) > uint64(len(b)-c.off) {
			c.err = ErrTruncated
		}
		c.take(int(n))
		if c.err != nil {
			return nil, fmt.Errorf("tds: login7: FeatureExt 0x%02X: %w", uint8(id), ErrOutOfRange)
		}
		ids = append(ids, id)
	}
}
