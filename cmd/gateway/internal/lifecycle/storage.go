package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gateway-project/gateway/configs"
	"github.com/gateway-project/gateway/tlsmgr"
	"github.com/gateway-project/gateway/tlsmgr/redisstore"
)

// storageOpenTimeout bounds connecting to a redis:// storage at start.
const storageOpenTimeout = 30 * time.Second

// openStorage opens the Redis store a redis:// storage names; nil (and no
// error) for a directory, which tlsmgr and proxy use as files.
func openStorage(ctx context.Context, cfg *configs.Config, logger *zap.Logger) (*redisstore.Store, error) {
	if !cfg.RedisStorage() {
		return nil, nil
	}
	r := cfg.StorageRedis
	key, err := redisstore.ParseKey(os.Getenv(r.EncryptionKeyEnv))
	if err != nil {
		return nil, fmt.Errorf("storage_redis.encryption_key_env %s: %w", r.EncryptionKeyEnv, err)
	}
	pw := ""
	if r.PasswordEnv != "" {
		pw = os.Getenv(r.PasswordEnv)
	}
	ctx, cancel := context.WithTimeout(ctx, storageOpenTimeout)
	defer cancel()
	st, err := redisstore.Open(ctx, redisstore.Config{URL: cfg.Storage, Password: pw, Key: key, Prefix: r.Prefix, CAFile: r.CAFile}, logger)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", cfg.Storage, err)
	}
	return st, nil
}

// storageHealthInterval is how often a running gateway asks Redis.
const storageHealthInterval = 5 * time.Second

// watchStorage asks Redis until ctx ends, so that gateway_storage_up and
// the log say when it goes away and comes back (the store logs the
// changes); the gateway serves from memory meanwhile.
func watchStorage(st *redisstore.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(storageHealthInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, storageHealthInterval)
				_ = st.Ping(pctx)
				cancel()
			}
		}
	}
}

// storageUpGauge is gateway_storage_up: 1 while the shared storage
// answers (always 1 for a directory).
func storageUpGauge(st *redisstore.Store) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_storage_up",
		Help: "1 while the certificate storage answers (a redis:// storage; always 1 for a directory), else 0: running gateways then serve from memory.",
	}, func() float64 {
		if st == nil || st.Up() {
			return 1
		}
		return 0
	})
}

// certStorage is st as tlsmgr's storage: nil (the directory) when st is.
func certStorage(st *redisstore.Store) certmagic.Storage {
	if st == nil {
		return nil
	}
	return st
}

// closeStore closes the Redis store, if any.
func (g *Gateway) closeStore() {
	if g.store != nil {
		_ = g.store.Close()
	}
}

// NewCertManager is tlsmgr.New on the storage cfg names, for the commands
// that read or write it without serving (ca root, ca issue, audit); close
// releases the manager and the store.
func NewCertManager(ctx context.Context, cfg *configs.Config) (*tlsmgr.Manager, func(), error) {
	st, err := openStorage(ctx, cfg, zap.NewNop())
	if err != nil {
		return nil, nil, err
	}
	m, err := tlsmgr.New(cfg.TLS, cfg.Storage, zap.NewNop(), tlsmgr.WithStorage(certStorage(st)))
	if err != nil {
		if st != nil {
			_ = st.Close()
		}
		return nil, nil, err
	}
	return m, func() {
		m.Close()
		if st != nil {
			_ = st.Close()
		}
	}, nil
}

// LocalStorageDir is the directory `gateway check` reads stored
// certificates from: none for a redis:// storage, whose state it reports
// through DescribeStorage instead.
func LocalStorageDir(cfg *configs.Config) string {
	if cfg.RedisStorage() {
		return ""
	}
	return cfg.Storage
}

// DescribeStorage says which storage is in use and, for Redis, whether it
// answers and the key opens what is there. A wrong key is an error: the
// gateway would refuse to start.
func DescribeStorage(ctx context.Context, cfg *configs.Config) (string, error) {
	if !cfg.RedisStorage() {
		return "storage " + cfg.Storage + " (directory)", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := openStorage(ctx, cfg, zap.NewNop())
	if errors.Is(err, redisstore.ErrWrongKey) {
		return "", err
	}
	if err != nil {
		return fmt.Sprintf("storage %s (Redis, prefix %s): NOT reachable now: %v", cfg.Storage, cfg.StorageRedis.Prefix, err), nil
	}
	_ = st.Close()
	return fmt.Sprintf("storage %s (Redis, prefix %s): reachable; the encryption key opens its values", cfg.Storage, cfg.StorageRedis.Prefix), nil
}
