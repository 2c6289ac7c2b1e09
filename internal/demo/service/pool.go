package service

import (
	"context"
	"sync"
)

// pool is the gateway's worker pool: at most capacity requests run at once, the others wait.
// Its capacity is what the autoscaler changes.
type pool struct {
	mu       sync.Mutex
	capacity int
	running  int
	waiting  int
	changed  chan struct{} // closed and replaced whenever a slot may have become free
}

func newPool(capacity int) *pool {
	return &pool{capacity: capacity, changed: make(chan struct{})}
}

// acquire waits for a slot until ctx ends.
func (p *pool) acquire(ctx context.Context) error {
	p.mu.Lock()
	p.waiting++
	for p.running >= p.capacity {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			return ctx.Err()
		}
		p.mu.Lock()
	}
	p.waiting--
	p.running++
	p.mu.Unlock()
	return nil
}

func (p *pool) release() {
	p.mu.Lock()
	p.running--
	p.wakeLocked()
	p.mu.Unlock()
}

func (p *pool) resize(capacity int) {
	p.mu.Lock()
	p.capacity = capacity
	p.wakeLocked()
	p.mu.Unlock()
}

func (p *pool) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// load is the work in the pool, running or waiting, and its capacity.
func (p *pool) load() (inFlight, capacity int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running + p.waiting, p.capacity
}
