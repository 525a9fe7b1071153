// Package redisstore is a certmagic.Storage and Locker on Redis, for
// gateways that run as a cluster behind a load balancer: one internal CA,
// one ACME account and one order per name for all of them, and the small
// values they must agree on (the sticky-session key, the names learned to
// be HTTP/1.1-only).
//
// Every value is sealed with AES-256-GCM under a 32-byte key the operator
// gives (storage_redis.encryption_key_env), with the storage key as
// additional data, so the CA's private key, the ACME account key and the
// certificate keys never sit in Redis in clear, and a value cannot be
// moved to another key. A sealed check value tells a wrong key at once: Open
// refuses to start rather than let certmagic re-issue over unreadable
// data.
//
// Locks are leases: SET NX PX with a random token, refreshed while held,
// released only by their owner (compare-and-delete in one Lua script), and
// lost by a holder that dies once the lease runs out. An index set makes
// List and Stat exact, so certmagic's cleaning and renewal see the same
// tree a file system would give them.
//
// It does not cache: a gateway keeps its certificates in memory and serves
// from there while Redis is down; Store reports Redis's state (Up) for
// readiness, a metric and a log line.
package redisstore
