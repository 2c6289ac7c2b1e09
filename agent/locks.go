package agent

import (
	"context"
	"sync"

	"github.com/faultline-dev/faultline/injectors/network"
)

// keyLocks are mutexes by name, made on first use and dropped when nobody holds or waits for
// them. The agent takes one per fault id and one per network namespace for every change of a
// fault, so that faults in different pods apply and revert in parallel while two changes of one
// fault, or two faults checking and changing one namespace's rules, still go one at a time.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch chan struct{} // holds a token while locked
	n  int           // holders and waiters
}

// lock takes the keys in order (callers use one order: fault, then namespace) and returns the
// function that releases them.
func (k *keyLocks) lock(ctx context.Context, keys ...string) (unlock func(), err error) {
	var held []string
	unlock = func() {
		for i := len(held) - 1; i >= 0; i-- {
			k.release(held[i])
		}
	}
	for _, key := range keys {
		if err := k.acquire(ctx, key); err != nil {
			unlock()
			return nil, err
		}
		held = append(held, key)
	}
	return unlock, nil
}

func (k *keyLocks) acquire(ctx context.Context, key string) error {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.n++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		k.mu.Lock()
		k.drop(key, l)
		k.mu.Unlock()
		return ctx.Err()
	}
}

func (k *keyLocks) release(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.m[key]
	<-l.ch
	k.drop(key, l)
}

func (k *keyLocks) drop(key string, l *keyLock) {
	if l.n--; l.n == 0 {
		delete(k.m, key)
	}
}

// lockFault takes the locks every change of fault id in namespace t holds: the fault's, then the
// namespace's.
func (a *Agent) lockFault(ctx context.Context, id string, t network.Target) (unlock func(), err error) {
	return a.locks.lock(ctx, faultKey(id), netnsKey(t))
}

func faultKey(id string) string { return "fault " + id }

func netnsKey(t network.Target) string {
	if t.ID != "" {
		return "netns " + t.ID
	}
	return "netns path " + t.Path
}
