package tlsmgr

import "github.com/caddyserver/certmagic"

// WithStorage makes the manager keep the internal CA, the ACME account and
// the certificates in s instead of the file storage in storageDir: the
// Redis store (tlsmgr/redisstore) that gateways of a cluster share, so that
// they serve leaves of one CA and place one ACME order per name. Nil keeps
// the file storage.
func WithStorage(s certmagic.Storage) Option {
	return func(m *Manager) {
		if s != nil {
			m.storage = s
		}
	}
}
