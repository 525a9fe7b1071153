package tds

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// PreloginToken identifies a PRELOGIN option (MS-TDS 2.2.6.5).
type PreloginToken uint8

// PRELOGIN option tokens.
const (
	PreloginVersion         PreloginToken = 0x00 // 6 bytes; must be first
	PreloginEncryption      PreloginToken = 0x01 // 1 byte
	PreloginInstOpt         PreloginToken = 0x02 // client: NUL-terminated name; server: 1 byte
	PreloginThreadID        PreloginToken = 0x03 // 4 bytes (servers send 0)
	PreloginMARS            PreloginToken = 0x04 // 1 byte
	PreloginTraceID         PreloginToken = 0x05 // 36 bytes (servers send 0)
	PreloginFedAuthRequired PreloginToken = 0x06 // 1 byte
	PreloginNonce           PreloginToken = 0x07 // 32 bytes
	PreloginTerminator      PreloginToken = 0xFF // ends the option table
)

// Encryption is the PRELOGIN ENCRYPTION byte: one of the four modes,
// possibly with EncryptClientCert set.
type Encryption uint8

// ENCRYPTION values (MS-TDS 2.2.6.5).
const (
	EncryptOff    Encryption = 0x00 // available but off: login packet only
	EncryptOn     Encryption = 0x01 // available and on
	EncryptNotSup Encryption = 0x02 // not available
	EncryptReq    Encryption = 0x03 // required
	// EncryptClientCert is a flag bit: certificate-based authentication
	// requested by the client, combined with Off, On or Req.
	EncryptClientCert Encryption = 0x80
	// encryptExt is the reserved ENCRYPT_EXT bit.
	encryptExt Encryption = 0x20
)

// Mode returns e without the EncryptClientCert and reserved 0x20 bits. A
// result other than the four modes is a value MS-TDS does not define.
func (e Encryption) Mode() Encryption { return e &^ (EncryptClientCert | encryptExt) }

// ClientCert reports whether the EncryptClientCert bit is set.
func (e Encryption) ClientCert() bool { return e&EncryptClientCert != 0 }

func (e Encryption) String() string {
	var s string
	switch e.Mode() {
	case EncryptOff:
		s = "OFF"
	case EncryptOn:
		s = "ON"
	case EncryptNotSup:
		s = "NOT_SUP"
	case EncryptReq:
		s = "REQ"
	default:
		return fmt.Sprintf("Encryption(0x%02X)", uint8(e))
	}
	if e&encryptExt != 0 {
		s += "|EXT"
	}
	if e.ClientCert() {
		s += "|CLIENT_CERT"
	}
	return s
}

// Version is a product version. In PRELOGIN VERSION it is major, minor and
// build (big-endian), then the sub-build; in LOGINACK ProgVersion it is
// major, minor, build high and low bytes, without a sub-build.
// The zero value is version 0.0.0.0.
type Version struct {
	Major    uint8  // major version, e.g. 16 for SQL Server 2022
	Minor    uint8  // minor version
	Build    uint16 // build number
	SubBuild uint16 // PRELOGIN only; 0 in LOGINACK
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v.Major, v.Minor, v.Build, v.SubBuild)
}

// TraceID is the PRELOGIN TRACEID option: the client's connection id and
// activity id, used by SQL Server for diagnostics (MS-TDS 2.2.6.5).
type TraceID struct {
	ConnID           [16]byte // GUID_CONNID, as on the wire
	ActivityID       [16]byte // GUID_ActivityID, as on the wire
	ActivitySequence uint32   // little-endian on the wire
}

// PreloginOption is a PRELOGIN option this package does not know, kept
// verbatim so that it can be forwarded.
type PreloginOption struct {
	Token PreloginToken // 0x08..0xFE
	Data  []byte        // option data; empty for a zero-length option
}

// Prelogin is a decoded PRELOGIN message, the payload of a client PRELOGIN
// packet (type 0x12) or of the server's reply (type 0x04). For every option
// but VERSION, nil means the option is absent, so the zero value is a
// PRELOGIN with only VERSION 0.0.0.0. Build values with Go 1.26 new(expr),
// e.g. Encryption: new(tds.EncryptOn).
type Prelogin struct {
	// Version is VERSION: ParsePrelogin requires it as the first option,
	// AppendBinary always writes it first.
	Version Version
	// Encryption is ENCRYPTION.
	Encryption *Encryption
	// InstOpt is the raw INSTOPT data: from a client, an instance name
	// terminated by NUL (a lone NUL for the default instance); from a
	// server, one byte, 0 when the name matched and 1 when it did not. See
	// InstanceOpt, Instance and InstanceMismatch. Non-nil and empty is an
	// INSTOPT of length 0.
	InstOpt []byte
	// ThreadID is THREADID, little-endian on the wire. A THREADID of length
	// 0, which servers send, decodes as nil.
	ThreadID *uint32
	// MARS is MARS: true requests (client) or grants (server) multiple
	// active result sets. Any non-zero byte decodes as true.
	MARS *bool
	// TraceID is TRACEID. A TRACEID of length 0 decodes as nil.
	TraceID *TraceID
	// FedAuthRequired is FEDAUTHREQUIRED; any non-zero byte decodes as true.
	FedAuthRequired *bool
	// Nonce is NONCEOPT.
	Nonce *[32]byte
	// Unknown holds options with tokens 0x08..0xFE in the order they
	// appeared; AppendBinary writes them after the known options in token
	// order.
	Unknown []PreloginOption
}

// InstanceOpt returns the client INSTOPT data for an instance name: the name
// followed by NUL. An empty name (the default instance) is a lone NUL.
func InstanceOpt(name string) []byte {
	return append([]byte(name), 0)
}

// Instance returns the instance name a client sent in INSTOPT: the bytes up
// to the first NUL, or "" when INSTOPT is absent or empty.
func (p *Prelogin) Instance() string {
	b, _, _ := bytes.Cut(p.InstOpt, []byte{0})
	return string(b)
}

// InstanceMismatch reports whether a server's INSTOPT says the client's
// instance name did not match (the byte 1). Meaningful on replies only.
func (p *Prelogin) InstanceMismatch() bool {
	return len(p.InstOpt) == 1 && p.InstOpt[0] == 1
}

// fixedSize is the data length of each known option, -1 if variable.
var fixedSize = [...]int{
	PreloginVersion:         6,
	PreloginEncryption:      1,
	PreloginInstOpt:         -1, // variable
	PreloginThreadID:        4,
	PreloginMARS:            1,
	PreloginTraceID:         36,
	PreloginFedAuthRequired: 1,
	PreloginNonce:           32,
}

// zeroOK reports whether a known option may have length 0. MS-TDS says
// THREADID SHOULD be empty from a server, and SQL Server sends an empty
// TRACEID too.
func zeroOK(t PreloginToken) bool { return t == PreloginThreadID || t == PreloginTraceID }

// ParsePrelogin decodes a PRELOGIN message payload. It rejects: an option
// table without the 0xFF terminator (ErrNoTerminator), a first option other
// than VERSION (ErrMissingVersion), an option twice (ErrDuplicateOption),
// data outside the payload (ErrOutOfRange), data overlapping the table or
// other data (ErrOverlap), and known options of the wrong size
// (ErrOptionSize). Offsets of zero-length options are ignored, as MS-TDS
// 2.2.6.4 does for empty LOGIN7 fields. The result does not alias payload.
//
// A PRELOGIN packet that carries a TLS handshake record instead of options
// is not a PRELOGIN message; callers tell them apart by connection state.
func ParsePrelogin(payload []byte) (*Prelogin, error) {
	type entry struct {
		tok      PreloginToken
		off, end int
	}
	// Find the terminator first, so that a table without one is reported
	// as such rather than by whatever its data looks like as entries.
	tableAt := 0
	for tableAt < len(payload) && PreloginToken(payload[tableAt]) != PreloginTerminator {
		tableAt += 5
	}
	if tableAt >= len(payload) {
		return nil, fmt.Errorf("tds: prelogin: option table of %d bytes: %w", len(payload), ErrNoTerminator)
	}
	tableAt++ // table and terminator end here
	if tableAt == 1 {
		return nil, fmt.Errorf("tds: prelogin: empty option table: %w", ErrMissingVersion)
	}

	var (
		seen     [256]bool
		entryBuf [16]entry // enough for every known client; more spill to the heap
		entries  = entryBuf[:0]
		spanBuf  [16]entry
		spans    = spanBuf[:0]
	)
	for at := 0; at+5 < tableAt; at += 5 {
		tok := PreloginToken(payload[at])
		if at == 0 && tok != PreloginVersion {
			return nil, fmt.Errorf("tds: prelogin: first option 0x%02X: %w", uint8(tok), ErrMissingVersion)
		}
		if seen[tok] {
			return nil, fmt.Errorf("tds: prelogin: option 0x%02X: %w", uint8(tok), ErrDuplicateOption)
		}
		seen[tok] = true
		off := int(binary.BigEndian.Uint16(payload[at+1:]))
		n := int(binary.BigEndian.Uint16(payload[at+3:]))
		if n == 0 {
			off = 0 // ignored; see above
		} else if off+n > len(payload) {
			return nil, fmt.Errorf("tds: prelogin: option 0x%02X at %d+%d of %d bytes: %w", uint8(tok), off, n, len(payload), ErrOutOfRange)
		}
		if int(tok) < len(fixedSize) && fixedSize[tok] >= 0 && n != fixedSize[tok] && !(n == 0 && zeroOK(tok)) {
			return nil, fmt.Errorf("tds: prelogin: option 0x%02X has %d bytes, want %d: %w", uint8(tok), n, fixedSize[tok], ErrOptionSize)
		}
		entries = append(entries, entry{tok, off, off + n})
	}

	// Overlap: data must start after the table and no two ranges may share
	// a byte. At most 255 options (duplicates are rejected), so sort a copy.
	for _, e := range entries {
		if e.end > e.off {
			if e.off < tableAt {
				return nil, fmt.Errorf("tds: prelogin: option 0x%02X data at %d inside the option table: %w", uint8(e.tok), e.off, ErrOverlap)
			}
			spans = append(spans, e)
		}
	}
	slices.SortFunc(spans, func(a, b entry) int { return a.off - b.off })
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].end {
			return nil, fmt.Errorf("tds: prelogin: options 0x%02X and 0x%02X: %w", uint8(spans[i-1].tok), uint8(spans[i].tok), ErrOverlap)
		}
	}

	p := &Prelogin{}
	for _, e := range entries {
		d := payload[e.off:e.end]
		switch e.tok {
		case PreloginVersion:
			p.Version = Version{
				Major:    d[0],
				Minor:    d[1],
				Build:    binary.BigEndian.Uint16(d[2:]),
				SubBuild: binary.BigEndian.Uint16(d[4:]), // byte order unstated; informational
			}
		case PreloginEncryption:
			p.Encryption = new(Encryption(d[0]))
		case PreloginInstOpt:
			p.InstOpt = append([]byte{}, d...)
		case PreloginThreadID:
			if len(d) == 4 {
				p.ThreadID = new(binary.LittleEndian.Uint32(d))
			}
		case PreloginMARS:
			p.MARS = new(d[0] != 0)
		case PreloginTraceID:
			if len(d) == 36 {
				t := &TraceID{ActivitySequence: binary.LittleEndian.Uint32(d[32:])}
				copy(t.ConnID[:], d[:16])
				copy(t.ActivityID[:], d[16:32])
				p.TraceID = t
			}
		case PreloginFedAuthRequired:
			p.FedAuthRequired = new(d[0] != 0)
		case PreloginNonce:
			p.Nonce = new([32]byte(d))
		default:
			p.Unknown = append(p.Unknown, PreloginOption{Token: e.tok, Data: append([]byte{}, d...)})
		}
	}
	return p, nil
}

// MarshalBinary returns the canonical encoding of p; see AppendBinary.
func (p *Prelogin) MarshalBinary() ([]byte, error) { return p.AppendBinary(nil) }

// AppendBinary appends the canonical encoding of p to b: the option table in
// ascending token order (VERSION first, Unknown options after the known
// ones), the terminator, then each option's data in the same order with no
// gaps. It fails with ErrDuplicateOption if Unknown repeats a token or uses a
// known one, ErrMalformed for the terminator token, and ErrFieldTooLong if
// an offset would not fit 16 bits.
func (p *Prelogin) AppendBinary(b []byte) ([]byte, error) {
	opts := make([]PreloginOption, 0, 8+len(p.Unknown))
	opts = append(opts, PreloginOption{PreloginVersion, []byte{
		p.Version.Major, p.Version.Minor,
		byte(p.Version.Build >> 8), byte(p.Version.Build),
		byte(p.Version.SubBuild >> 8), byte(p.Version.SubBuild),
	}})
	if p.Encryption != nil {
		opts = append(opts, PreloginOption{PreloginEncryption, []byte{byte(*p.Encryption)}})
	}
	if p.InstOpt != nil {
		opts = append(opts, PreloginOption{PreloginInstOpt, p.InstOpt})
	}
	if p.ThreadID != nil {
		opts = append(opts, PreloginOption{PreloginThreadID, binary.LittleEndian.AppendUint32(nil, *p.ThreadID)})
	}
	if p.MARS != nil {
		opts = append(opts, PreloginOption{PreloginMARS, []byte{boolByte(*p.MARS)}})
	}
	if p.TraceID != nil {
		d := make([]byte, 0, 36)
		d = append(d, p.TraceID.ConnID[:]...)
		d = append(d, p.TraceID.ActivityID[:]...)
		opts = append(opts, PreloginOption{PreloginTraceID, binary.LittleEndian.AppendUint32(d, p.TraceID.ActivitySequence)})
	}
	if p.FedAuthRequired != nil {
		opts = append(opts, PreloginOption{PreloginFedAuthRequired, []byte{boolByte(*p.FedAuthRequired)}})
	}
	if p.Nonce != nil {
		opts = append(opts, PreloginOption{PreloginNonce, p.Nonce[:]})
	}
	unknown := slices.Clone(p.Unknown)
	slices.SortStableFunc(unknown, func(a, b PreloginOption) int { return int(a.Token) - int(b.Token) })
	for i, o := range unknown {
		switch {
		case o.Token == PreloginTerminator:
			return b, fmt.Errorf("tds: prelogin: unknown option with terminator token: %w", ErrMalformed)
		case o.Token <= PreloginNonce || (i > 0 && unknown[i-1].Token == o.Token):
			return b, fmt.Errorf("tds: prelogin: option 0x%02X: %w", uint8(o.Token), ErrDuplicateOption)
		}
	}
	opts = append(opts, unknown...)

	off := 5*len(opts) + 1
	for _, o := range opts {
		if len(o.Data) > 0xFFFF || off > 0xFFFF {
			return b, fmt.Errorf("tds: prelogin: option 0x%02X at offset %d: %w", uint8(o.Token), off, ErrFieldTooLong)
		}
		b = append(b, byte(o.Token))
		b = binary.BigEndian.AppendUint16(b, uint16(off))
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.Data)))
		off += len(o.Data)
	}
	b = append(b, byte(PreloginTerminator))
	for _, o := range opts {
		b = append(b, o.Data...)
	}
	return b, nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// String summarises p for logs. It holds nothing secret: the nonce is shown
// only as present.
func (p *Prelogin) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "version=%s", p.Version)
	if p.Encryption != nil {
		fmt.Fprintf(&sb, " encryption=%s", *p.Encryption)
	}
	if p.InstOpt != nil {
		fmt.Fprintf(&sb, " instopt=%q", p.InstOpt)
	}
	if p.ThreadID != nil {
		fmt.Fprintf(&sb, " threadid=%d", *p.ThreadID)
	}
	if p.MARS != nil {
		fmt.Fprintf(&sb, " mars=%t", *p.MARS)
	}
	if p.TraceID != nil {
		fmt.Fprintf(&sb, " traceid=%x", p.TraceID.ConnID)
	}
	if p.FedAuthRequired != nil {
		fmt.Fprintf(&sb, " fedauthrequired=%t", *p.FedAuthRequired)
	}
	if p.Nonce != nil {
		sb.WriteString(" nonce=present")
	}
	for _, o := range p.Unknown {
		fmt.Fprintf(&sb, " option_0x%02X=%d_bytes", uint8(o.Token), len(o.Data))
	}
	return sb.String()
}
