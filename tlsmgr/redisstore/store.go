package redisstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Config is how to reach Redis and seal the values.
type Config struct {
	// URL is redis://[user@]host:port/db, or rediss:// for TLS.
	URL string
	// Password, when set, overrides one in URL.
	Password string
	// Key is the 32-byte AES-256 key every value is sealed with.
	Key []byte
	// Prefix starts every Redis key ("gateway" when empty), so that
	// several clusters can share one Redis.
	Prefix string
	// CAFile is PEM roots for a rediss:// server's certificate; empty
	// means the system roots.
	CAFile string
	// LockLease is how long a lock lives without a refresh (30s when 0).
	LockLease time.Duration
}

// DefaultLockLease bounds how long a dead holder keeps a lock.
const DefaultLockLease = 30 * time.Second

// Store is a certmagic.Storage on Redis. Its methods are safe for
// concurrent use.
type Store struct {
	rdb    *redis.Client
	aead   cipher.AEAD
	prefix string
	lease  time.Duration
	log    *zap.Logger

	up atomic.Bool

	mu    sync.Mutex
	locks map[string]*heldLock // locks this process holds
}

var _ certmagic.Storage = (*Store)(nil)

// ErrWrongKey means the encryption key does not open the values already in
// Redis: another key sealed them.
var ErrWrongKey = errors.New("the encryption key does not open the values already in Redis (sealed with another key)")

// ParseKey decodes a base64 encryption key and checks it has 32 bytes.
func ParseKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("%d bytes, want 32 (e.g. openssl rand -base64 32)", len(k))
	}
	return k, nil
}

// Open connects to Redis, checks the key against the values already there
// (or marks Redis with it when it is empty) and returns the store.
func Open(ctx context.Context, cfg Config, logger *zap.Logger) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("storage_redis.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("storage_redis.ca_file: no PEM certificate in %s", cfg.CAFile)
			}
			opts.TLSConfig.RootCAs = pool
		}
	} else if cfg.CAFile != "" {
		return nil, errors.New("storage_redis.ca_file: only for rediss:// (TLS)")
	}
	block, err := aes.NewCipher(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("storage_redis.encryption_key_env: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &Store{
		rdb:    redis.NewClient(opts),
		aead:   aead,
		prefix: cfg.Prefix,
		lease:  cfg.LockLease,
		log:    logger.Named("storage"),
		locks:  map[string]*heldLock{},
	}
	if s.prefix == "" {
		s.prefix = "gateway"
	}
	if s.lease <= 0 {
		s.lease = DefaultLockLease
	}
	if err := s.checkKey(ctx); err != nil {
		_ = s.rdb.Close()
		return nil, err
	}
	s.up.Store(true)
	return s, nil
}

// Close releases the connections; locks still held are left to expire.
func (s *Store) Close() error { return s.rdb.Close() }

func (s *Store) valueKey(key string) string { return s.prefix + ":k:" + key }
func (s *Store) indexKey() string           { return s.prefix + ":index" }
func (s *Store) lockKey(name string) string { return s.prefix + ":lock:" + name }

// keyCheck is sealed under the key "\x00keycheck", which no storage key can
// be (certmagic keys are paths of printable characters).
const keyCheck = "gateway storage key check"

func (s *Store) checkKey(ctx context.Context) error {
	k := s.prefix + ":keycheck"
	sealed := s.seal("\x00keycheck", []byte(keyCheck))
	ok, err := s.rdb.SetNX(ctx, k, sealed, 0).Result()
	if err != nil {
		return fmt.Errorf("storage: connecting to Redis: %w", err)
	}
	if ok {
		return nil // a new store: marked with this key
	}
	have, err := s.rdb.Get(ctx, k).Bytes()
	if err != nil {
		return fmt.Errorf("storage: reading the key check: %w", err)
	}
	if plain, err := s.open("\x00keycheck", have); err != nil || string(plain) != keyCheck {
		return fmt.Errorf("storage_redis.encryption_key_env: %w", ErrWrongKey)
	}
	return nil
}

// seal encrypts value for key: a version byte, the nonce, the ciphertext.
func (s *Store) seal(key string, value []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(value)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	out := append([]byte{1}, nonce...)
	return s.aead.Seal(out, nonce, value, []byte("gateway-storage:"+key))
}

func (s *Store) open(key string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != 1 {
		return nil, fmt.Errorf("storage: %s: not a sealed value", key)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte("gateway-storage:"+key))
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", key, ErrWrongKey)
	}
	return plain, nil
}

// note records whether Redis answered.
func (s *Store) note(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		if !s.up.Swap(true) {
			s.log.Info("redis storage reachable again")
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if s.up.Swap(false) {
		s.log.Error("redis storage unreachable; serving the certificates in memory", zap.Error(err))
	}
	return err
}

// Up reports whether Redis answered the last request.
func (s *Store) Up() bool { return s.up.Load() }

// Ping asks Redis and records the answer (for a health loop).
func (s *Store) Ping(ctx context.Context) error { return s.note(s.rdb.Ping(ctx).Err()) }

// Store puts value at key, sealed.
func (s *Store) Store(ctx context.Context, key string, value []byte) error {
	now := time.Now().UnixNano()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.valueKey(key), "v", s.seal(key, value), "m", now, "s", len(value))
		p.SAdd(ctx, s.indexKey(), key)
		return nil
	})
	if s.note(err) != nil {
		return fmt.Errorf("storage: storing %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or fs.ErrNotExist.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.rdb.HGet(ctx, s.valueKey(key), "v").Bytes()
	if errors.Is(s.note(err), redis.Nil) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("storage: loading %s: %w", key, err)
	}
	return s.open(key, v)
}

// keys returns the stored keys equal to key or under key/.
func (s *Store) keys(ctx context.Context, key string) ([]string, error) {
	all, err := s.rdb.SMembers(ctx, s.indexKey()).Result()
	if s.note(err) != nil {
		return nil, err
	}
	var out []string
	for _, k := range all {
		if k == key || key == "" || strings.HasPrefix(k, key+"/") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes key and everything under it.
func (s *Store) Delete(ctx context.Context, key string) error {
	ks, err := s.keys(ctx, key)
	if err != nil {
		return fmt.Errorf("storage: deleting %s: %w", key, err)
	}
	if len(ks) == 0 {
		return nil
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range ks {
			p.Del(ctx, s.valueKey(k))
			p.SRem(ctx, s.indexKey(), k)
		}
		return nil
	})
	if s.note(err) != nil {
		return fmt.Errorf("storage: deleting %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a value or a directory of values.
func (s *Store) Exists(ctx context.Context, key string) bool {
	ks, err := s.keys(ctx, key)
	return err == nil && len(ks) > 0
}

// List returns the keys directly under path, or all below it when
// recursive; a directory is listed as its own key.
func (s *Store) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	ks, err := s.keys(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("storage: listing %s: %w", path, err)
	}
	seen := map[string]bool{}
	var out []string
	base := strings.TrimSuffix(path, "/")
	for _, k := range ks {
		if k == base {
			continue
		}
		rest := strings.TrimPrefix(k, base+"/")
		if base == "" {
			rest = k
		}
		if !recursive {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i]
			}
		}
		full := rest
		if base != "" {
			full = base + "/" + rest
		}
		if !seen[full] {
			seen[full] = true
			out = append(out, full)
		}
		if recursive {
			// Directories on the way are listed too, as a walk of a file
			// system would.
			for dir := parentOf(full); dir != base && dir != ""; dir = parentOf(dir) {
				if !seen[dir] {
					seen[dir] = true
					out = append(out, dir)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	sort.Strings(out)
	return out, nil
}

func parentOf(k string) string {
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		return k[:i]
	}
	return ""
}

// Stat describes key: a value (its size and modification time) or a
// directory.
func (s *Store) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	vals, err := s.rdb.HMGet(ctx, s.valueKey(key), "m", "s").Result()
	if s.note(err) != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	if vals[0] != nil {
		m, _ := strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64)
		size, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, m), Size: size, IsTerminal: true}, nil
	}
	ks, err := s.keys(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	if len(ks) == 0 {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

func (s *Store) String() string { return "redis storage (prefix " + s.prefix + ")" }
