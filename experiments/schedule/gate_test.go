package schedule

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGateTryAcquire(t *testing.T) {
	var g Gate
	relA, ok := g.TryAcquire("payments")
	if !ok {
		t.Fatal("free target refused")
	}
	if _, ok := g.TryAcquire("payments"); ok {
		t.Error("held target acquired twice")
	}
	relB, ok := g.TryAcquire("checkout")
	if !ok {
		t.Error("other target refused")
	}
	relA()
	relA2, ok := g.TryAcquire("payments")
	if !ok {
		t.Fatal("released target refused")
	}
	relA() // a second release of a stale holder must not free relA2's hold
	if _, ok := g.TryAcquire("payments"); ok {
		t.Error("double release freed another holder's target")
	}
	relA2()
	relB()
}

func TestGateAcquireQueues(t *testing.T) {
	var g Gate
	release, err := g.Acquire(t.Context(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		rel, err := g.Acquire(t.Context(), "payments")
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- rel
	}()
	release()
	select {
	case rel := <-got:
		if _, ok := g.TryAcquire("payments"); ok {
			t.Error("target free while the queued run holds it")
		}
		rel()
	case <-time.After(10 * time.Second):
		t.Fatal("queued Acquire never got the released target")
	}
	if rel, ok := g.TryAcquire("payments"); !ok {
		t.Error("target still held after every release")
	} else {
		rel()
	}
}

func TestGateAcquireHonoursContext(t *testing.T) {
	var g Gate
	hold, _ := g.TryAcquire("payments")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.Acquire(ctx, "payments"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire on a held target = %v, want DeadlineExceeded", err)
	}
	hold()
	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	if rel, err := g.Acquire(done, "payments"); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a cancelled context on a free target = %v, want Canceled", err)
		if rel != nil {
			rel()
		}
	}
	if rel, ok := g.TryAcquire("payments"); !ok {
		t.Error("an abandoned wait leaked the target")
	} else {
		rel()
	}
}

func TestAdmit(t *testing.T) {
	var g Gate
	forbid := mustCompile(t, Schedule{Runbook: "pod-kill", Cron: "@hourly", Target: "payments"})
	queue := mustCompile(t, Schedule{Runbook: "latency", Cron: "@hourly", Target: "payments", Concurrency: "queue"})
	rel, err := forbid.Admit(t.Context(), &g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forbid.Admit(t.Context(), &g); !errors.Is(err, ErrSkipped) {
		t.Errorf("forbid on a busy target = %v, want ErrSkipped", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := queue.Admit(ctx, &g); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queue on a busy target = %v, want to wait until the deadline", err)
	}
	rel()
	if rel, err := queue.Admit(t.Context(), &g); err != nil {
		t.Errorf("queue on a free target = %v", err)
	} else {
		rel()
	}
}
