package realnode

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestLockHostWaitsForTheHolder: a second real node waits while the first holds the host-wide lock,
// and gets it once the first lets go.
func TestLockHostWaitsForTheHolder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lock lives under /run: needs root")
	}
	ctx := t.Context()
	first, err := lockHost(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if second, err := lockHost(wctx, t.Logf); !errors.Is(err, context.DeadlineExceeded) {
		if second != nil {
			_ = second.Close()
		}
		t.Fatalf("second lock while the first is held: got %v, want to wait until the deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		second, err := lockHost(ctx, t.Logf)
		if second != nil {
			_ = second.Close()
		}
		got <- err
	}()
	_ = first.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("lock after the holder let go: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lock not taken 30 s after the holder let go")
	}
}
