package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commits concurrent writes to one FileLedger together: a write that arrives while a
// commit is in flight waits for it and goes into the next commit with every other write that
// arrived meanwhile, so that N concurrent writers cost a few fsyncs instead of N. Each write is
// still durable when its call returns. Writers in one process also stop contending for bbolt's
// file lock, which a waiter polls (every 50 ms) rather than queues on.
//
// A write that fails on its own (Modify of a missing entry) fails alone; a commit that fails
// (the disk) fails every write in it.
type Group struct {
	l *FileLedger

	mu      sync.Mutex
	busy    bool
	pending []*groupOp
}

type groupOp struct {
	write func(*bolt.Bucket) error
	// done receives the write's outcome, or lead: the op's caller commits the next batch.
	done chan groupResult
}

type groupResult struct {
	err  error
	lead bool
}

// Group returns a group committer over l. Use one per process and ledger file.
func (l *FileLedger) Group() *Group { return &Group{l: l} }

// Put is FileLedger.Put, sharing its commit with concurrent writes.
func (g *Group) Put(ctx context.Context, entries ...*Entry) error {
	vals := make([][]byte, len(entries))
	for i, e := range entries {
		v, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("%w: encode entry %s: %w", ErrLedger, e.ID, err)
		}
		vals[i] = v
	}
	return g.do(ctx, func(b *bolt.Bucket) error {
		for i, e := range entries {
			if err := b.Put([]byte(e.ID), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Modify is FileLedger.Modify, sharing its commit with concurrent writes.
func (g *Group) Modify(ctx context.Context, id string, fn func(*Entry)) error {
	return g.do(ctx, func(b *bolt.Bucket) error { return modify(b, id, fn) })
}

func (g *Group) do(ctx context.Context, write func(*bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrLedger, err)
	}
	op := &groupOp{write: write, done: make(chan groupResult, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, op)
	if g.busy {
		g.mu.Unlock()
		// Not abandoned on ctx: the commit holding this write is bounded by the committer's
		// deadline, and a caller must learn whether its write is on disk.
		r := <-op.done
		if !r.lead {
			return r.err
		}
	} else {
		g.busy = true
		g.mu.Unlock()
	}
	// This caller leads: commit what is pending, hand the lead to the next waiter, if any.
	g.mu.Lock()
	batch := g.pending
	g.pending = nil
	g.mu.Unlock()
	errs := make([]error, len(batch))
	// The commit carries other callers' writes: the leader going away does not cancel it (the wait
	// for bbolt's file lock stays bounded by the ledger's own timeout).
	err := g.l.update(context.WithoutCancel(ctx), func(b *bolt.Bucket) error {
		for i, o := range batch {
			errs[i] = o.write(b)
			// A write refused before it changed anything fails alone; a failed bucket Put is
			// bbolt's own trouble and fails the commit.
			var u unwritten
			if errs[i] != nil && !errors.As(errs[i], &u) {
				return errs[i]
			}
		}
		return nil
	})
	var mine error
	for i, o := range batch {
		e := err
		if e == nil && errs[i] != nil {
			e = fmt.Errorf("%w: write %s: %w", ErrLedger, g.l.path, errs[i])
		}
		if o == op {
			mine = e
			continue
		}
		o.done <- groupResult{err: e}
	}
	g.mu.Lock()
	if len(g.pending) > 0 {
		g.pending[0].done <- groupResult{lead: true}
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	return mine
}

// unwritten is a write refused before it changed the bucket.
type unwritten struct{ error }

func (u unwritten) Unwrap() error { return u.error }

// modify is FileLedger.Modify's step inside a transaction.
func modify(b *bolt.Bucket, id string, fn func(*Entry)) error {
	v := b.Get([]byte(id))
	if v == nil {
		return unwritten{fmt.Errorf("entry %s not found", id)}
	}
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return unwritten{fmt.Errorf("decode entry %s: %w", id, err)}
	}
	fn(&e)
	nv, err := json.Marshal(&e)
	if err != nil {
		return unwritten{fmt.Errorf("encode entry %s: %w", id, err)}
	}
	return b.Put([]byte(id), nv)
}
