package tdstest

import (
	"crypto/tls"
	"fmt"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/sqltunnel/tds"
)

// Encryption is the server's encryption setting, the column of the MS-TDS
// 2.2.6.5 table that picks the PRELOGIN ENCRYPTION answer.
type Encryption int

// Server encryption settings.
const (
	// EncryptOff is SQL Server's default (ForceEncryption=No): encryption
	// is available but off. A client that sends ON or REQ gets full TLS; a
	// client that sends OFF gets login-only encryption (only the first
	// LOGIN7 packet inside TLS, everything else clear text); NOT_SUP gets
	// none. TDS 8 clients (TLS first) are accepted too, as SQL Server 2022
	// does.
	EncryptOff Encryption = iota
	// EncryptForced is ForceEncryption=Yes: ON and REQ get ON, OFF gets REQ
	// (the client upgrades to full TLS), NOT_SUP gets REQ and the server
	// closes the connection. TDS 8 clients are accepted.
	EncryptForced
	// EncryptNotSupported is a server without a certificate: every client
	// gets NOT_SUP, and clients that asked for encryption give up. TLS-first
	// (TDS 8) connections are closed.
	EncryptNotSupported
	// EncryptStrict is SQL Server 2022's "Force Strict Encryption": only TDS
	// 8 is accepted (TLS first, ALPN tds/8.0, then PRELOGIN and LOGIN7
	// inside TLS); a TDS 7.x PRELOGIN is answered by closing the
	// connection.
	EncryptStrict
)

func (e Encryption) String() string {
	switch e {
	case EncryptOff:
		return "off"
	case EncryptForced:
		return "forced"
	case EncryptNotSupported:
		return "not_supported"
	case EncryptStrict:
		return "strict"
	}
	return fmt.Sprintf("Encryption(%d)", int(e))
}

// Defaults used for zero Config fields.
const (
	DefaultDatabase   = "master"
	DefaultServerName = "tdstest"
	// DefaultVersion is the @@VERSION text when Config.Version is empty.
	DefaultVersion = "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) (tdstest double)"
)

// Config configures a Server. The zero value is a server with SQL Server's
// default encryption setting (EncryptOff), a throwaway certificate for
// localhost and 127.0.0.1, and no logins.
type Config struct {
	// Addr is the address to listen on; "" means 127.0.0.1:0 (a free
	// loopback port).
	Addr string

	// Encryption is the server setting; the zero value is EncryptOff, as
	// on a default SQL Server installation.
	Encryption Encryption

	// Certificate is the server certificate for TLS. Nil means a
	// certificate for localhost and 127.0.0.1 signed by a throwaway CA whose
	// root Server.RootPEM returns.
	Certificate *tls.Certificate

	// MinTLSVersion is the lowest TLS version accepted; 0 means TLS 1.2.
	// TLS inside PRELOGIN (TDS 7.x) never goes above TLS 1.2; TDS 8 uses up
	// to TLS 1.3.
	MinTLSVersion uint16

	// Users holds the SQL logins, user name to password. A login with a
	// wrong user or password gets error 18456 "Login failed for user 'x'."
	// (class 14, state 1) and the connection is closed, as SQL Server does.
	// Nil or empty: no login succeeds.
	Users map[string]string

	// NTLMUsers holds the Windows logins integrated authentication accepts,
	// lower-case user name to password, verified as NTLMv2 for real (a
	// CHALLENGE in an SSPI token, the client's AUTHENTICATE in an SSPI
	// message). A wrong password or unknown user gets error 18456 "Login
	// failed for user 'DOMAIN\user'.". Nil or empty: every integrated login
	// gets error 18452, as from a server that trusts no domain.
	NTLMUsers map[string]string
	// NTLMDomain is the domain the challenge names; "" means "CORP".
	NTLMDomain string
	// ExtendedProtection is SQL Server's Extended Protection = Required: an
	// NTLM login must carry a channel binding to this server's own TLS
	// channel (tls-unique, or tls-server-end-point of its certificate), or
	// it gets error 18452 — what a client whose TLS ends at a proxy gets.
	ExtendedProtection bool

	// Database is the default and only database; "" means "master".
	// "master" is always accepted too. A login asking for another database
	// gets error 4060 and 18456.
	Database string

	// ServerName is the server name in ERROR and INFO tokens; "" means
	// "tdstest".
	ServerName string

	// Version is the text of SELECT @@VERSION; "" means DefaultVersion.
	Version string

	// Instance is the server's instance name: what clients write after a
	// backslash (HOST\INSTANCE) and a Browser announces for it
	// (Browser.Announce). "" is the default instance, which is reached by
	// port and never announced.
	Instance string

	// MaxPacketSize caps the packet size granted to a client in the
	// ENVCHANGE of the login reply; 0 means 32767, the protocol maximum.
	// Clients asking for less get what they ask for (512 at least); a client
	// asking for 0 gets 4096. Real SQL Server grants at most 16383 on
	// encrypted connections; set 16383 to mimic that.
	MaxPacketSize int

	// Connections are rows sys.dm_exec_connections lists after those of the
	// live sessions: connections an audit should find, such as a client
	// connecting around the gateway without encryption.
	Connections []ConnectionRow

	// Databases are the rows of sys.databases after master, with whether
	// each is encrypted at rest (TDE).
	Databases []DatabaseRow

	// Faults injects misbehaviour, for testing clients and proxies.
	Faults Faults

	// Logger receives one Info line per connection end and Debug lines
	// per request; nil means no logging. Passwords are never logged.
	Logger *zap.Logger
}

// Faults are deliberate deviations from a well-behaved SQL Server. The zero
// value injects nothing.
type Faults struct {
	// AnswerEncryption, when non-nil, replaces the ENCRYPTION value of every
	// PRELOGIN answer (TDS 7.x and TDS 8). The server then behaves as the
	// answer implies: NOT_SUP means no TLS, OFF to a client that sent OFF
	// means login-only, anything else full TLS.
	AnswerEncryption *tds.Encryption

	// CloseAfterPrelogin closes the connection right after reading the
	// client's PRELOGIN, without answering.
	CloseAfterPrelogin bool

	// StallAfterPrelogin reads the client's PRELOGIN and then never
	// answers, holding the connection open until the client gives up or the
	// server is closed: for handshake-timeout tests.
	StallAfterPrelogin bool

	// OversizedPacket makes the first packet of the reply to the first
	// request after login (SQL batch or RPC) one byte longer than the
	// negotiated packet size (it starts with a padding INFO message).
	OversizedPacket bool

	// Routing, when non-nil, adds a routing ENVCHANGE (type 20, or 21 when
	// Enhanced) to a successful login reply, as Azure SQL redirection and
	// read-only routing do; the client is then expected to reconnect to
	// Routing.Server and Routing.Port.
	Routing *tds.Routing
}

func (c *Config) database() string {
	if c.Database == "" {
		return DefaultDatabase
	}
	return c.Database
}

func (c *Config) serverName() string {
	if c.ServerName == "" {
		return DefaultServerName
	}
	return c.ServerName
}

func (c *Config) version() string {
	if c.Version == "" {
		return DefaultVersion
	}
	return c.Version
}

func (c *Config) maxPacketSize() int {
	if c.MaxPacketSize <= 0 || c.MaxPacketSize > tds.MaxPacketSize {
		return tds.MaxPacketSize
	}
	return max(c.MaxPacketSize, tds.MinPacketSize)
}
