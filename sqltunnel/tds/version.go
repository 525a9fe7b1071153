package tds

import "fmt"

// TDSVersion is a TDS protocol version as carried by LOGIN7 (little-endian)
// and LOGINACK (big-endian): 0x74000004 is TDS 7.4. The zero value means
// "unknown"; encoders treat it as TDS 7.2 or later.
type TDSVersion uint32

// TDS versions (MS-TDS 2.2.6.4, 2.2.7.14).
const (
	TDS70  TDSVersion = 0x70000000
	TDS71  TDSVersion = 0x71000000
	TDS71A TDSVersion = 0x71000001 // TDS 7.1 revision 1 (SQL Server 2000 SP1)
	TDS72  TDSVersion = 0x72090002
	TDS73A TDSVersion = 0x730A0003
	TDS73B TDSVersion = 0x730B0003
	TDS74  TDSVersion = 0x74000004
	TDS80  TDSVersion = 0x08000000 // TDS 8.0 (strict); numerically smaller than 7.x
)

// Pre72 reports whether v is TDS 7.0 or 7.1, whose LOGIN7 lacks the
// change-password and long-SSPI fields, and whose DONE row count and
// ERROR/INFO line number are 32 and 16 bits wide instead of 64 and 32. The
// zero value, TDS 8 and unknown versions report false.
func (v TDSVersion) Pre72() bool {
	major := uint32(v) >> 24
	return major == 0x70 || major == 0x71
}

func (v TDSVersion) String() string {
	switch v {
	case TDS70:
		return "7.0"
	case TDS71:
		return "7.1"
	case TDS71A:
		return "7.1A"
	case TDS72:
		return "7.2"
	case TDS73A:
		return "7.3A"
	case TDS73B:
		return "7.3B"
	case TDS74:
		return "7.4"
	case TDS80:
		return "8.0"
	}
	return fmt.Sprintf("0x%08X", uint32(v))
}
