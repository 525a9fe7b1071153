// Package tdstest is a SQL Server test double in the style of
// net/http/httptest: [NewServer] listens on a loopback port and speaks real
// TDS to real clients (go-mssqldb, FreeTDS, tedious, pytds), so tests,
// benchmarks and `gateway demo` can run without a SQL Server.
//
// It implements what a client needs to log in and run a few statements, and
// implements it faithfully where the gateway's security depends on it: the
// PRELOGIN encryption answer of MS-TDS 2.2.6.5 for each server setting
// (including "login-only" encryption, where only the first LOGIN7 packet is
// encrypted and everything after it is clear text, which real servers do and
// the gateway must never allow on a network leg), TLS carried inside
// PRELOGIN packets (TDS 7.x) and TLS first with ALPN tds/8.0 (TDS 8 strict),
// SQL logins checked against [Config.Users] with SQL Server's error 18456,
// packet-size negotiation, and attention (cancel) during long results. Every
// connection leaves a [SessionRecord] saying what the client sent and what
// was negotiated, so tests can prove what happened on the wire.
//
// Statements it understands (case-insensitive, one per batch or
// sp_executesql call):
//
//	SELECT 1                              one INT column (any integer literal works)
//	SELECT @@VERSION                      one NVARCHAR column: Config.Version
//	SELECT * FROM tdstest.rows(N, M)      N rows of one VARBINARY column of M bytes
//	SELECT * FROM tdstest.nrows(N, M)     N rows of one NVARCHAR column of M bytes (M even)
//	WAITFOR DELAY 'hh:mm:ss[.fff]'        returns after the delay, or early on attention
//	SET ...                               accepted and ignored (drivers send these on connect)
//	SELECT e1[, e2 ...]                   one row; each e an integer literal, @@VERSION,
//	                                      @@MAX_PRECISION, @@TRANCOUNT, @@SPID, @@SERVERNAME,
//	                                      @@LANGUAGE, DB_NAME() or SERVERPROPERTY('name'),
//	                                      optionally AS alias (session-setup queries)
//	SELECT cols FROM sys.dm_exec_connections [WHERE session_id = @@SPID]
//	                                      the live sessions (encrypt_option TRUE when fully
//	                                      encrypted, client_net_address, auth_scheme, ...),
//	                                      then Config.Connections
//	SELECT cols FROM sys.databases        name, database_id, is_encrypted (TDE): master,
//	                                      then Config.Databases
//
// A batch of several of the statements above without rowsets or delays,
// one per line or separated by ';' (jTDS sends SELECT @@MAX_PRECISION and
// SET statements in one batch right after login), gets one result per
// statement, each but the last DONE with DONE_MORE, as SQL Server answers.
//
// Rowsets are streamed packet by packet (columns over 8000 bytes use the
// MAX types and PLP chunks), so a 256 MiB result costs one packet of memory;
// row r holds bytes ((r + i) mod 251) for i = 0..M-1 (VARBINARY) or the
// letters ('a' + (r + i) mod 26) (NVARCHAR). Any other batch gets SQL Server
// error 156 (an RPC to another procedure, error 2812) and the session goes on.
//
// Transaction manager requests (BEGIN, COMMIT, ROLLBACK, which pytds sends
// on connect and go-mssqldb for BeginTx) are answered with the ENVCHANGE
// tokens SQL Server sends, and mean nothing.
//
// What it does not do: it is not a database (no tables, no data, no
// parameters beyond the statement text of sp_executesql), it does not
// implement MARS, Kerberos or SPNEGO, federated authentication or bulk
// load (NTLM it verifies: Config.NTLMUsers, Config.ExtendedProtection), and
// it is not hardened for hostile networks: it listens on loopback
// for tests. A Browser (NewBrowser) announces servers with a Config.Instance,
// so that clients and the gateway can reach them as HOST\INSTANCE. It never panics on malformed input; such a connection
// is closed and its record says why.
package tdstest
