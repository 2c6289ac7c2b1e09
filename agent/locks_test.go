package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// One key is held by one caller at a time, other keys are free meanwhile, a waiter gives up with
// its context, and nothing is left in the map once all are released.
func TestKeyLocks(t *testing.T) {
	var k keyLocks
	ctx := context.Background()
	unlockA, err := k.lock(ctx, "fault a", "netns 1")
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := k.lock(ctx, "fault b", "netns 2")
	if err != nil {
		t.Fatalf("another fault in another namespace waited: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := k.lock(short, "fault c", "netns 1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second holder of netns 1 = %v, want it to wait until its deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := k.lock(ctx, "fault c", "netns 1")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlockA()
	if err := <-got; err != nil {
		t.Fatalf("netns 1 once released: %v", err)
	}
	unlockB()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) != 0 {
		t.Errorf("%d locks left after every release: %v", len(k.m), k.m)
	}
}
