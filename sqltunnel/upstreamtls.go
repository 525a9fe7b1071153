package sqltunnel

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/sqltunnel/tdstls"
	"github.com/gateway-project/gateway/tlsmgr"
)

// upstreamTLS is the client TLS toward one upstream server name, in both
// dialects: tds7 for TLS inside PRELOGIN (TLS 1.2 at most) and tds8 for
// TLS first with ALPN tds/8.0.
type upstreamTLS struct {
	tds7, tds8 *tls.Config
}

// newUpstreamTLS derives both configurations from base, cloned once here
// and never per connection: clones share base's session cache
// (tlsmgr.ClientTLSConfig), so the upstream handshake of a new session
// resumes an earlier one's when the upstream issues session tickets.
func newUpstreamTLS(base *tls.Config) upstreamTLS {
	c := base.Clone()
	// One TDS packet per TLS record: Go's dynamic record sizing would split
	// packets into small records, which SQL Server mishandles (go-mssqldb
	// issue 166).
	c.DynamicRecordSizingDisabled = true
	c8 := c.Clone()
	c8.NextProtos = []string{alpnTDS8}
	return upstreamTLS{tds7: tdstls.Limit(c), tds8: c8}
}

// maxRouteTLS bounds the routed server names whose configurations a
// listener keeps; when full it starts over.
const maxRouteTLS = 64

// routeTLS builds and keeps the client TLS toward the servers an upstream
// routes its clients to (upstream.routing: follow). Each is verified for
// its own name, with the listener's ca_file (or the system roots) —
// never a pin, which names the first server's certificate only.
type routeTLS struct {
	upstream configs.SQLUpstream
	base     *tls.Config // WithUpstreamTLS's configuration; nil: tlsmgr builds one
	logger   *zap.Logger

	mu     sync.Mutex
	byName map[string]upstreamTLS
}

// forHost returns the configurations that verify host's certificate.
func (r *routeTLS) forHost(host string) (upstreamTLS, error) {
	key := strings.ToLower(host)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.byName[key]; ok {
		return t, nil
	}
	var base *tls.Config
	if r.base != nil {
		base = r.base.Clone()
		base.ServerName = host
	} else {
		u := r.upstream.TLS()
		u.ServerName, u.PinSHA256 = host, ""
		var err error
		if base, err = tlsmgr.ClientTLSConfig(u, r.logger); err != nil {
			return upstreamTLS{}, fmt.Errorf("TLS toward the routed server %s: %w", host, err)
		}
	}
	if r.byName == nil || len(r.byName) >= maxRouteTLS {
		r.byName = make(map[string]upstreamTLS)
	}
	t := newUpstreamTLS(base)
	r.byName[key] = t
	return t, nil
}
