package tds

import (
	"encoding/binary"
	"fmt"
	"io"
)

// FeatureExt is one option of a LOGIN7 FeatureExt block, for Login7Builder.
type FeatureExt struct {
	ID   FeatureID // must not be FeatureTerminator
	Data []byte    // FeatureData; nil is an empty feature
}

// Login7Builder encodes a LOGIN7 message, for tests, the test SQL Server
// double and test clients; the gateway itself only forwards logins. It holds
// secrets (Password, ChangePassword, SSPI, FedAuth data in Features), so it
// formats itself without them, but it must still never be handed to a
// logger. The zero value encodes an empty TDS 7.4 login with packet size 4096.
type Login7Builder struct {
	TDSVersion     TDSVersion // 0 means TDS74; TDS70/TDS71 select the 86-byte fixed part
	PacketSize     uint32     // 0 means DefaultPacketSize
	ClientProgVer  uint32     // see Login7
	ClientPID      uint32     // see Login7
	ConnectionID   uint32     // see Login7
	OptionFlags1   uint8      // written as is
	OptionFlags2   uint8      // OptionFlags2IntegratedSecurity is added when SSPI is set
	TypeFlags      uint8      // written as is, e.g. TypeFlagsReadOnlyIntent
	OptionFlags3   uint8      // ChangePassword and Extension bits are added when needed
	ClientTimeZone int32      // written as is
	ClientLCID     uint32     // written as is

	HostName       string       // see Login7; every string is written as UCS-2LE
	UserName       string       // SQL login name
	Password       string       // secret; obfuscated on the wire (MS-TDS 2.2.6.4), not encrypted
	AppName        string       // see Login7
	ServerName     string       // see Login7
	Library        string       // CltIntName
	Language       string       // see Login7
	Database       string       // see Login7
	AttachDBFile   string       // see Login7
	ChangePassword string       // secret; the new password, TDS 7.2+
	ClientID       [6]byte      // see Login7
	SSPI           []byte       // secret; an SSPI blob, written after the strings
	Features       []FeatureExt // TDS 7.4; encoded in order, then the terminator
}

// Format prints only the safe fields, for every verb, so that %v, %+v,
// %#v or %d can never reveal Password, ChangePassword, SSPI or feature data.
func (b Login7Builder) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, fmt.Sprintf("tds.Login7Builder{user=%q host=%q app=%q server=%q database=%q password=%s}",
		b.UserName, b.HostName, b.AppName, b.ServerName, b.Database, redacted(b.Password != "")))
}

func redacted(set bool) string {
	if set {
		return "[REDACTED]"
	}
	return `""`
}

// Build encodes the LOGIN7 message payload (without packet headers; send it
// with Writer.WriteMessage as PacketLogin7). Variable data follows the fixed
// part in field order with SSPI and FeatureExt last, so that only they may
// lie beyond 64 KiB. It fails with ErrFieldTooLong if a string exceeds 65535
// UTF-16 units or an offset would not fit its field, and with ErrMalformed
// for features, a change password or a long SSPI blob on TDS 7.0/7.1.
func (b *Login7Builder) Build() ([]byte, error) {
	ver := b.TDSVersion
	if ver == 0 {
		ver = TDS74
	}
	fixed := login7FixedLen
	if ver.Pre72() {
		fixed = login7FixedLen71
		if len(b.Features) > 0 || b.ChangePassword != "" || len(b.SSPI) >= 0xFFFF {
			return nil, fmt.Errorf("tds: login7: features, change password or SSPI >= 64 KiB need TDS 7.2+: %w", ErrMalformed)
		}
	}
	psize := b.PacketSize
	if psize == 0 {
		psize = DefaultPacketSize
	}
	f1, f2, tf, f3 := b.OptionFlags1, b.OptionFlags2, b.TypeFlags, b.OptionFlags3
	if len(b.SSPI) > 0 {
		f2 |= OptionFlags2IntegratedSecurity
	}
	if b.ChangePassword != "" {
		f3 |= OptionFlags3ChangePassword
	}
	if len(b.Features) > 0 {
		f3 |= OptionFlags3Extension
	}

	out := make([]byte, fixed, fixed+256)
	binary.LittleEndian.PutUint32(out[4:], uint32(ver))
	binary.LittleEndian.PutUint32(out[8:], psize)
	binary.LittleEndian.PutUint32(out[12:], b.ClientProgVer)
	binary.LittleEndian.PutUint32(out[16:], b.ClientPID)
	binary.LittleEndian.PutUint32(out[20:], b.ConnectionID)
	out[24], out[25], out[26], out[27] = f1, f2, tf, f3
	binary.LittleEndian.PutUint32(out[28:], uint32(b.ClientTimeZone))
	binary.LittleEndian.PutUint32(out[32:], b.ClientLCID)
	copy(out[offClientID:], b.ClientID[:])

	var err error
	// put writes data at the end of out and its (offset, count) at field.
	put := func(field int, data []byte, count int, name string) {
		if err != nil {
			return
		}
		if len(out) > 0xFFFF || count > 0xFFFF {
			err = fmt.Errorf("tds: login7: %s at offset %d, count %d: %w", name, len(out), count, ErrFieldTooLong)
			return
		}
		binary.LittleEndian.PutUint16(out[field:], uint16(len(out)))
		binary.LittleEndian.PutUint16(out[field+2:], uint16(count))
		out = append(out, data...)
	}
	str := func(field int, s, name string) { put(field, appendUCS2(nil, s), ucs2Len(s), name) }

	str(offHostName, b.HostName, "HostName")
	str(offUserName, b.UserName, "UserName")
	put(offPassword, obfuscatePassword(appendUCS2(nil, b.Password)), ucs2Len(b.Password), "Password")
	str(offAppName, b.AppName, "AppName")
	str(offServerName, b.ServerName, "ServerName")
	extAt := len(out)
	if len(b.Features) > 0 {
		put(offExtension, make([]byte, 4), 4, "Extension") // ibFeatureExtLong, set below
	} else {
		put(offExtension, nil, 0, "Extension")
	}
	str(offCltIntName, b.Library, "CltIntName")
	str(offLanguage, b.Language, "Language")
	str(offDatabase, b.Database, "Database")
	str(offAtchDBFile, b.AttachDBFile, "AtchDBFile")
	if fixed == login7FixedLen {
		put(offChangePass, obfuscatePassword(appendUCS2(nil, b.ChangePassword)), ucs2Len(b.ChangePassword), "ChangePassword")
	}
	if err != nil {
		return nil, err
	}
	// SSPI: cbSSPI is 0xFFFF and cbSSPILong the length when it does not fit.
	cb := len(b.SSPI)
	if cb >= 0xFFFF {
		if uint64(cb) > 0xFFFFFFFF {
			return nil, fmt.Errorf("tds: login7: SSPI of %d bytes: %w", cb, ErrFieldTooLong)
		}
		binary.LittleEndian.PutUint32(out[offSSPILong:], uint32(cb))
		cb = 0xFFFF
	}
	put(offSSPI, b.SSPI, cb, "SSPI")
	if err != nil {
		return nil, err
	}
	if len(b.Features) > 0 {
		binary.LittleEndian.PutUint32(out[extAt:], uint32(len(out)))
		for _, fe := range b.Features {
			if fe.ID == FeatureTerminator || uint64(len(fe.Data)) > 0xFFFFFFFF {
				return nil, fmt.Errorf("tds: login7: feature 0x%02X: %w", uint8(fe.ID), ErrMalformed)
			}
			out = append(out, byte(fe.ID))
			out = binary.LittleEndian.AppendUint32(out, uint32(len(fe.Data)))
			out = append(out, fe.Data...)
		}
		out = append(out, byte(FeatureTerminator))
	}
	if uint64(len(out)) > 0xFFFFFFFF {
		return nil, fmt.Errorf("tds: login7: %d bytes: %w", len(out), ErrFieldTooLong)
	}
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	return out, nil
}

// obfuscatePassword applies the LOGIN7 password encoding in place: for each
// byte of the UCS-2LE password, swap the nibbles, then XOR with 0xA5
// (MS-TDS 2.2.6.4). It is an encoding, not encryption.
func obfuscatePassword(b []byte) []byte {
	for i, c := range b {
		b[i] = (c<<4 | c>>4) ^ 0xA5
	}
	return b
}

// deobfuscatePassword reverses obfuscatePassword in place.
func deobfuscatePassword(b []byte) []byte {
	for i, c := range b {
		c ^= 0xA5
		b[i] = c<<4 | c>>4
	}
	return b
}

// DecodePasswordForServerSide returns the clear-text password of a LOGIN7
// message payload. It exists only for the test SQL Server double
// (sqltunnel/tdstest), which must check SQL logins like a real server; the
// gateway never calls it. The result is a secret: never log it, never put it
// in an error, and do not keep it longer than the check. An absent password
// is "" with a nil error.
func DecodePasswordForServerSide(login7 []byte) (string, error) {
	b, fixed, err := login7Layout(login7)
	if err != nil {
		return "", err
	}
	pw, err := login7Field(b, fixed, offPassword, 2, "Password")
	if err != nil {
		return "", err
	}
	plain := deobfuscatePassword(append([]byte(nil), pw...))
	s, err := decodeUCS2(plain)
	clear(plain)
	return s, err
}
