package schedule

import (
	"context"
	"fmt"
	"sync"
)

// Gate lets one run at a time hold a target. The zero value is ready to use.
type Gate struct {
	mu    sync.Mutex
	slots map[string]chan struct{} // one token slot per target; targets come from config, so the map stays small
}

func (g *Gate) slot(target string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.slots == nil {
		g.slots = make(map[string]chan struct{})
	}
	s, ok := g.slots[target]
	if !ok {
		s = make(chan struct{}, 1)
		g.slots[target] = s
	}
	return s
}

// TryAcquire takes target if it is free (the forbid policy). release may be
// called more than once.
func (g *Gate) TryAcquire(target string) (release func(), ok bool) {
	s := g.slot(target)
	select {
	case s <- struct{}{}:
		return releaser(s), true
	default:
		return nil, false
	}
}

// Acquire waits for target (the queue policy); waiters are served in the order
// they blocked, as Go serves blocked channel senders.
func (g *Gate) Acquire(ctx context.Context, target string) (release func(), err error) {
	if err := ctx.Err(); err != nil { // select would pick at random if the slot were free too
		return nil, fmt.Errorf("wait for target %q: %w", target, err)
	}
	s := g.slot(target)
	select {
	case s <- struct{}{}:
		return releaser(s), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for target %q: %w", target, ctx.Err())
	}
}

func releaser(s chan struct{}) func() {
	var once sync.Once
	return func() { once.Do(func() { <-s }) }
}

// Admit takes c's target in g by c's concurrency policy: under forbid a busy
// target yields an error wrapping ErrSkipped, which a start function can return
// to Loop as is.
func (c *Compiled) Admit(ctx context.Context, g *Gate) (release func(), err error) {
	if c.spec.Concurrency == ConcurrencyQueue {
		return g.Acquire(ctx, c.spec.Target)
	}
	release, ok := g.TryAcquire(c.spec.Target)
	if !ok {
		return nil, fmt.Errorf("target %q is busy (concurrency forbid): %w", c.spec.Target, ErrSkipped)
	}
	return release, nil
}
