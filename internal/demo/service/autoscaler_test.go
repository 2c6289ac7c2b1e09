package service

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func testScaler(t *testing.T) *scaler {
	t.Helper()
	cfg := scalerConfig{replicas: 2, min: 2, max: 6, perReplica: 2, target: 0.5, tolerance: 0.1,
		sync: time.Second, stabilization: 10 * time.Second, startup: time.Second}
	return newScaler(cfg, newPool(0), prometheus.NewRegistry())
}

// The HPA's rule, decided on utilisations given by the test (its clock too).
func TestScalerFollowsTheHPAAlgorithm(t *testing.T) {
	s := testScaler(t)
	t0 := time.Unix(1000, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

	s.decide(at(0), 0.54) // ratio 1.08: within the tolerance
	if s.desired != 2 {
		t.Fatalf("within tolerance: desired %d, want 2", s.desired)
	}
	s.decide(at(1), 0.8) // ceil(2 × 1.6) = 4
	if s.desired != 4 || s.current != 2 {
		t.Fatalf("scale-out: desired %d current %d, want 4 and 2 (not ready yet)", s.desired, s.current)
	}
	s.converge(at(1).Add(500 * time.Millisecond))
	if s.current != 2 {
		t.Fatalf("current %d before the new replicas started, want 2", s.current)
	}
	s.converge(at(2))
	if s.current != 4 || s.pool.capacity != 8 {
		t.Fatalf("after startup: current %d capacity %d, want 4 and 8", s.current, s.pool.capacity)
	}
	s.decide(at(3), 5) // ceil(4 × 10) = 40, clamped to max 6
	s.converge(at(5))
	if s.desired != 6 || s.current != 6 {
		t.Fatalf("clamp: desired %d current %d, want 6", s.desired, s.current)
	}
	// Idle: the recommendation falls to min, but a scale-in takes the highest recommendation of
	// the last 10 s (6, from t=3) until it has left the window.
	s.decide(at(5), 0)
	if s.desired != 6 {
		t.Fatalf("stabilization: desired %d at t=5, want 6", s.desired)
	}
	s.decide(at(14), 0)
	if s.desired != 2 {
		t.Fatalf("after the window: desired %d at t=14, want 2", s.desired)
	}
	s.converge(at(14))
	if s.current != 2 || s.pool.capacity != 4 {
		t.Fatalf("scale-in is immediate: current %d capacity %d", s.current, s.pool.capacity)
	}
}

// Bad flags are refused before anything listens.
func TestMainRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"--role", "database"},
		{"--role", "gateway"},
		{"--role", "gateway", "--shard", "shard-1"},
		{"--role", "gateway", "--shard", "a=127.0.0.1:1", "--min-replicas", "5", "--max-replicas", "3"},
		{"--role", "gateway", "--shard", "a=127.0.0.1:1", "--target-utilisation", "0"},
		{"--role", "shard", "--listen", "256.0.0.1:1"},
	} {
		if err := Main(t.Context(), args, &discard{}); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }
