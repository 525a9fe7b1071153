package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// SharedStore holds the small values the gateways of a cluster must agree
// on: the key of sticky cookies, so that a cookie one gateway set sends
// the client to the same IIS server through any other, and the names
// learned to be HTTP/1.1-only. certmagic.Storage implements it (the Redis
// store of tlsmgr/redisstore). Load returns fs.ErrNotExist for a missing
// key; Lock blocks until the lock is held or ctx ends.
type SharedStore interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// Keys of the shared values.
const (
	sharedStickyKey = "sticky.key"
	sharedHTTP1Only = "http1-only.json"
)

// sharedTimeout bounds each exchange with the shared store.
const sharedTimeout = 30 * time.Second

// WithSharedStore keeps the sticky-cookie key and the HTTP/1.1-only names
// in st instead of files (WithStickyKeyFile, WithHTTP1OnlyFile), for
// gateways that share one store.
func WithSharedStore(st SharedStore) Option {
	return func(o *options) {
		o.shared = st
		if st != nil {
			o.http1Only = sharedHTTP1OnlyStore{st}
		}
	}
}

// stickyKeyFrom reads the sticky-cookie key from st, creating it under the
// store's lock when missing: the first gateway of a cluster makes it and
// the others read it.
func stickyKeyFrom(st SharedStore) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	key, err := st.Load(ctx, sharedStickyKey)
	if err == nil {
		return checkStickyKey(key)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the sticky key: %w", err)
	}
	if err := st.Lock(ctx, "sticky_key"); err != nil {
		return nil, fmt.Errorf("locking the sticky key: %w", err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), "sticky_key") }()
	if key, err := st.Load(ctx, sharedStickyKey); err == nil {
		return checkStickyKey(key) // another gateway made it meanwhile
	}
	key = make([]byte, stickyKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := st.Store(ctx, sharedStickyKey, key); err != nil {
		return nil, fmt.Errorf("storing the sticky key: %w", err)
	}
	return key, nil
}

func checkStickyKey(key []byte) ([]byte, error) {
	if len(key) != stickyKeySize {
		return nil, fmt.Errorf("sticky key in storage: %d bytes, want %d; delete it to make a new one", len(key), stickyKeySize)
	}
	return key, nil
}

// sharedHTTP1OnlyStore keeps the HTTP/1.1-only names in a SharedStore, in
// the JSON of HTTP1OnlyFile.
type sharedHTTP1OnlyStore struct{ st SharedStore }

func (s sharedHTTP1OnlyStore) Load() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	data, err := s.st.Load(ctx, sharedHTTP1Only)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d http1OnlyFileData
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&d); err != nil {
		return nil, fmt.Errorf("%s in storage: %w", sharedHTTP1Only, err)
	}
	return d.Names, nil
}

func (s sharedHTTP1OnlyStore) Save(names []string) error {
	if names == nil {
		names = []string{}
	}
	data, err := json.Marshal(http1OnlyFileData{Names: names})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	return s.st.Store(ctx, sharedHTTP1Only, data)
}
