package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// heldLock is a lock this process holds, refreshed until Unlock.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// refreshScript extends a lease only for its owner.
var refreshScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// releaseScript deletes a lock only for its owner.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// newToken is a lock's value: who holds it (host and process, for an
// operator looking at Redis) and a random part that makes it this
// holder's alone.
func newToken() (string, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(tok)), nil
}

// Lock blocks until it holds the lock name, or ctx ends. The lock is a
// lease of LockLease, refreshed every third of it while held: a process
// that dies loses it when its lease runs out.
func (s *Store) Lock(ctx context.Context, name string) error {
	token, err := newToken()
	if err != nil {
		return err
	}
	wait := 50 * time.Millisecond
	for {
		ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lease).Result()
		if s.note(err) != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("storage: locking %s: %w", name, err)
		}
		if ok {
			s.hold(name, token)
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// TryLock takes the lock name if it is free.
func (s *Store) TryLock(ctx context.Context, name string) (bool, error) {
	token, err := newToken()
	if err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lease).Result()
	if s.note(err) != nil {
		return false, fmt.Errorf("storage: locking %s: %w", name, err)
	}
	if ok {
		s.hold(name, token)
	}
	return ok, nil
}

func (s *Store) hold(name, token string) {
	ctx, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	s.locks[name] = h
	s.mu.Unlock()
	go func() {
		defer close(h.done)
		t := time.NewTicker(s.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := refreshScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, token, s.lease.Milliseconds()).Int()
				if s.note(err) != nil && ctx.Err() == nil {
					s.log.Warn("refreshing a storage lock failed; it expires unless Redis answers again", zap.String("lock", name), zap.Error(err))
				} else if err == nil && n == 0 {
					s.log.Error("storage lock lost: its lease ran out before a refresh", zap.String("lock", name))
					return
				}
			}
		}
	}()
}

// Unlock releases name if this process still owns it.
func (s *Store) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("storage: unlocking %s: not held by this process", name)
	}
	h.stop()
	<-h.done
	_, err := releaseScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token).Int()
	if s.note(err) != nil {
		return fmt.Errorf("storage: unlocking %s: %w", name, err)
	}
	return nil
}
