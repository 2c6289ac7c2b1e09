package load

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// inflight tracks requests that have been sent and not answered. A hanging target shows up in
// completed requests only when they time out; until then the users of that service are already
// waiting, so the window's quantiles count each request in flight at its age so far (a lower
// bound of its latency). Without this a load guardrail notices a hang one timeout late.
type inflight struct {
	mu     sync.Mutex
	next   uint64 // also the count of requests sent so far
	starts map[uint64]time.Time
}

func newInflight() *inflight { return &inflight{starts: map[uint64]time.Time{}} }

func (f *inflight) add(at time.Time) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.starts[f.next] = at
	return f.next
}

func (f *inflight) done(id uint64) {
	f.mu.Lock()
	delete(f.starts, id)
	f.mu.Unlock()
}

// sent is how many requests have been sent so far.
func (f *inflight) sent() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next
}

// ages returns how long each request in flight has been waiting at now.
func (f *inflight) ages(now time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]time.Duration, 0, len(f.starts))
	for _, at := range f.starts {
		out = append(out, now.Sub(at))
	}
	return out
}

// trackingTransport records each request as in flight until its response headers arrive (or
// it fails); the body is small or discarded, so that is when a user would see an answer.
// It also ties every request to ctx, so that stopping the load can abandon requests a hanging
// target would otherwise hold for a whole timeout.
type trackingTransport struct {
	base http.RoundTripper
	f    *inflight
	ctx  context.Context
}

func (t trackingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	id := t.f.add(time.Now())
	defer t.f.done(id)
	return t.base.RoundTrip(r.WithContext(t.ctx))
}
