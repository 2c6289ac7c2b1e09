package ledger

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// Concurrent writers through one Group: every write is on disk when its call returns (read back
// through a second handle on the file), and a write refused on its own does not fail the others
// that shared its commit.
func TestGroupCommitsConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g := l.Group()
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	missing := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("f%02d", i)
			if err := g.Put(ctx, &Entry{ID: id, RunID: "r", State: StateRecorded}); err != nil {
				errs[i] = err
				return
			}
			missing[i] = g.Modify(ctx, id+"-missing", func(e *Entry) { e.State = StateApplied })
			errs[i] = g.Modify(ctx, id, func(e *Entry) { e.State = StateApplied })
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("writer %d: %v", i, errs[i])
		}
		if missing[i] == nil || !errors.Is(missing[i], ErrLedger) {
			t.Errorf("writer %d: modify of a missing entry = %v, want a ledger error", i, missing[i])
		}
	}
	other, err := OpenExisting(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.Entries(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d entries on disk, want %d", len(got), n)
	}
	for _, e := range got {
		if e.State != StateApplied {
			t.Errorf("entry %s: state %q, want %q", e.ID, e.State, StateApplied)
		}
	}
}

// A commit that cannot happen (the context is done) fails its writes, and the group still
// commits the next ones.
func TestGroupFailedCommitFailsItsWrites(t *testing.T) {
	l, err := OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	g := l.Group()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Put(done, &Entry{ID: "a"}); !errors.Is(err, ErrLedger) {
		t.Fatalf("put with a done context = %v, want a ledger error", err)
	}
	if err := g.Put(context.Background(), &Entry{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Entries(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "b" {
		t.Errorf("entries %v, want only b", got)
	}
}
