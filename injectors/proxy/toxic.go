//go:build linux

package proxy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Stream selects the direction of a connection's data a toxic acts on.
type Stream uint8

const (
	// Upstream is data from the client to the upstream server (requests).
	Upstream Stream = 1 << iota
	// Downstream is data from the upstream server back to the client (responses).
	Downstream
	// Both is both directions.
	Both = Upstream | Downstream
)

func (s Stream) String() string {
	switch s {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	case Both:
		return "both"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// Distribution is how latency jitter is distributed.
type Distribution uint8

const (
	// Uniform spreads delays evenly over delay±jitter.
	Uniform Distribution = iota
	// Normal draws delays from a normal distribution with standard deviation jitter (never below 0).
	Normal
)

func (d Distribution) String() string {
	if d == Normal {
		return "normal"
	}
	return "uniform"
}

// Toxic is one behaviour applied to connections through a Proxy. Exactly one of the kind fields
// is set.
type Toxic struct {
	Name string
	// Stream is the data it affects; 0 means the kind's default (downstream for latency and
	// bandwidth, both for blackhole and slow-close). Reset ignores it.
	Stream Stream
	// Toxicity is the share of connections affected, decided once per connection each time the
	// toxic set changes. 0 means 1 (every connection).
	Toxicity float64

	Latency   *Latency
	Bandwidth *Bandwidth
	Reset     *Reset
	Blackhole *Blackhole
	SlowClose *SlowClose
}

// Latency holds each chunk of data for Delay ± Jitter. Chunks keep their order: one that drew a
// short delay waits behind an earlier one that drew a long delay.
type Latency struct {
	Delay        time.Duration
	Jitter       time.Duration
	Distribution Distribution
	// Correlation in [0,1]: how much each delay's random part depends on the previous one (netem's
	// correlation, as a fraction).
	Correlation float64
}

// Bandwidth limits a stream to BytesPerSecond.
type Bandwidth struct {
	BytesPerSecond float64
}

// Reset closes connections with a TCP RST to both sides, After the connection opened or the toxic
// became active (the later of the two).
type Reset struct {
	After time.Duration
}

// Blackhole stops forwarding (data waits in the socket buffers, as with a black-holed route) and
// closes the connection Timeout after the toxic became active; 0 holds until the toxic is removed.
type Blackhole struct {
	Timeout time.Duration
}

// SlowClose delays the propagation of a close (FIN) by Delay.
type SlowClose struct {
	Delay time.Duration
}

// Kind names the toxic's kind.
func (t Toxic) Kind() string {
	switch {
	case t.Latency != nil:
		return "latency"
	case t.Bandwidth != nil:
		return "bandwidth"
	case t.Reset != nil:
		return "reset"
	case t.Blackhole != nil:
		return "blackhole"
	case t.SlowClose != nil:
		return "slow-close"
	}
	return ""
}

// Validate reports a toxic that cannot be applied.
func (t Toxic) Validate() error {
	n := 0
	for _, set := range []bool{t.Latency != nil, t.Bandwidth != nil, t.Reset != nil, t.Blackhole != nil, t.SlowClose != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("toxic %q: exactly one kind must be set, got %d", t.Name, n)
	}
	if t.Toxicity < 0 || t.Toxicity > 1 || math.IsNaN(t.Toxicity) {
		return fmt.Errorf("toxic %q: toxicity %g is not in [0,1]", t.Name, t.Toxicity)
	}
	if t.Stream&^Both != 0 {
		return fmt.Errorf("toxic %q: invalid stream %d", t.Name, t.Stream)
	}
	switch {
	case t.Latency != nil:
		l := t.Latency
		if l.Delay < 0 || l.Jitter < 0 {
			return fmt.Errorf("toxic %q: negative latency", t.Name)
		}
		if l.Correlation < 0 || l.Correlation > 1 || math.IsNaN(l.Correlation) {
			return fmt.Errorf("toxic %q: correlation %g is not in [0,1]", t.Name, l.Correlation)
		}
	case t.Bandwidth != nil:
		if !(t.Bandwidth.BytesPerSecond >= 1) || math.IsInf(t.Bandwidth.BytesPerSecond, 0) {
			return fmt.Errorf("toxic %q: bandwidth %g bytes/s must be at least 1", t.Name, t.Bandwidth.BytesPerSecond)
		}
	case t.Reset != nil:
		if t.Reset.After < 0 {
			return fmt.Errorf("toxic %q: negative reset delay", t.Name)
		}
	case t.Blackhole != nil:
		if t.Blackhole.Timeout < 0 {
			return fmt.Errorf("toxic %q: negative blackhole timeout", t.Name)
		}
	case t.SlowClose != nil:
		if t.SlowClose.Delay < 0 {
			return fmt.Errorf("toxic %q: negative slow-close delay", t.Name)
		}
	}
	return nil
}

// stream returns the toxic's effective stream.
func (t Toxic) stream() Stream {
	if t.Stream != 0 {
		return t.Stream
	}
	switch {
	case t.Latency != nil, t.Bandwidth != nil:
		return Downstream
	case t.Reset != nil:
		return 0
	}
	return Both
}

func (t Toxic) String() string {
	var b strings.Builder
	switch {
	case t.Latency != nil:
		fmt.Fprintf(&b, "latency %s", FormatDelay(t.Latency.Delay, t.Latency.Jitter, t.Latency.Distribution))
		if t.Latency.Correlation > 0 {
			fmt.Fprintf(&b, " correlation %g%%", t.Latency.Correlation*100)
		}
	case t.Bandwidth != nil:
		fmt.Fprintf(&b, "bandwidth %s", formatRate(t.Bandwidth.BytesPerSecond))
	case t.Reset != nil:
		b.WriteString("reset (RST)")
		if t.Reset.After > 0 {
			fmt.Fprintf(&b, " after %s", t.Reset.After)
		}
	case t.Blackhole != nil:
		b.WriteString("blackhole (hold data)")
		if t.Blackhole.Timeout > 0 {
			fmt.Fprintf(&b, ", close after %s", t.Blackhole.Timeout)
		}
	case t.SlowClose != nil:
		fmt.Fprintf(&b, "slow close %s", t.SlowClose.Delay)
	}
	if s := t.stream(); s != 0 {
		fmt.Fprintf(&b, " %s", s)
	}
	if t.Toxicity > 0 && t.Toxicity < 1 {
		fmt.Fprintf(&b, " on %g%% of connections", t.Toxicity*100)
	}
	return b.String()
}

// FormatDelay writes a delay the way the Describe lines show it: "50ms±0", "50ms±10ms normal".
func FormatDelay(delay, jitter time.Duration, d Distribution) string {
	if jitter == 0 {
		return delay.String() + "±0"
	}
	return fmt.Sprintf("%s±%s %s", delay, jitter, d)
}

func formatRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.4gGB/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.4gMB/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.4gKB/s", bps/1e3)
	}
	return fmt.Sprintf("%.4gB/s", bps)
}

// sampler draws delays for one stream of one connection.
type sampler struct {
	l    Latency
	last float64 // previous random part, in units of jitter, for correlation
}

// next returns the delay for the next chunk. With correlation c the random part is
// (1-c)·fresh + c·previous, as netem does.
func (s *sampler) next() time.Duration {
	if s.l.Jitter == 0 {
		return s.l.Delay
	}
	var r float64
	switch s.l.Distribution {
	case Normal:
		r = rand.NormFloat64()
	default:
		r = rand.Float64()*2 - 1
	}
	if c := s.l.Correlation; c > 0 {
		r = (1-c)*r + c*s.last
	}
	s.last = r
	d := s.l.Delay + time.Duration(r*float64(s.l.Jitter))
	return max(d, 0)
}

// stage computes when a chunk leaves one toxic of a stream's chain.
type stage interface {
	// at returns when a chunk of n bytes that reached this stage at t leaves it.
	at(t time.Time, n int) time.Time
}

type latencyStage struct{ s sampler }

func (l *latencyStage) at(t time.Time, _ int) time.Time { return t.Add(l.s.next()) }

// bandwidthStage is a virtual clock: the stream is busy sending until free.
type bandwidthStage struct {
	bps  float64
	free time.Time
}

func (b *bandwidthStage) at(t time.Time, n int) time.Time {
	start := t
	if b.free.After(start) {
		start = b.free
	}
	b.free = start.Add(time.Duration(float64(n) / b.bps * float64(time.Second)))
	return b.free
}

// linkToxics is what one stream of one connection does to its data, built each time the
// connection's toxic set changes. Only the stream's reader goroutine uses the stages.
type linkToxics struct {
	stages    []stage
	hold      bool          // a blackhole: forward nothing
	slowClose time.Duration // delay before a close is passed on
	maxChunk  int           // read at most this much at once (bandwidth smoothing); 0 = buffer size
}

// queueBytes bounds the data a stream holds for its writer. With a bandwidth limit it is 64
// chunks, 640 ms at the rate, so that the sender is slowed down close to the rate rather than
// seconds later; otherwise (latency) it is what the queue holds, 32 MiB, so that a delay does not
// cap throughput below what the data's arrival rate needs (rate × delay).
func (lt *linkToxics) queueBytes() int64 {
	if lt.maxChunk > 0 {
		return 64 * int64(lt.maxChunk)
	}
	return queueLen * bufSize
}

// view is one connection's share of the proxy's toxic set: which toxics apply to it (toxicity is
// decided once per connection per set) and what they do to each stream.
type view struct {
	up, down *linkToxics // nil: the stream has no toxic (fast path)
	reset    *Reset
	timeout  time.Duration // blackhole timeout; 0 = none
	names    []string
}

func (v *view) link(s Stream) *linkToxics {
	if s == Upstream {
		return v.up
	}
	return v.down
}

// bufSize is the size of a chunk buffer on the toxic path.
const bufSize = 32 << 10

// newView rolls the dice for one connection and builds its per-stream stages.
func newView(set []Toxic) *view {
	v := &view{}
	for _, t := range set {
		if t.Toxicity > 0 && t.Toxicity < 1 && rand.Float64() >= t.Toxicity {
			continue
		}
		v.names = append(v.names, t.Name)
		if t.Reset != nil {
			r := *t.Reset
			if v.reset == nil || r.After < v.reset.After {
				v.reset = &r
			}
			continue
		}
		if t.Blackhole != nil && t.Blackhole.Timeout > 0 && (v.timeout == 0 || t.Blackhole.Timeout < v.timeout) {
			v.timeout = t.Blackhole.Timeout
		}
		for _, s := range []Stream{Upstream, Downstream} {
			if t.stream()&s == 0 {
				continue
			}
			lt := v.link(s)
			if lt == nil {
				lt = &linkToxics{}
				if s == Upstream {
					v.up = lt
				} else {
					v.down = lt
				}
			}
			switch {
			case t.Latency != nil:
				lt.stages = append(lt.stages, &latencyStage{s: sampler{l: *t.Latency}})
			case t.Bandwidth != nil:
				lt.stages = append(lt.stages, &bandwidthStage{bps: t.Bandwidth.BytesPerSecond})
				// Read at most ~10ms worth at a time so the rate is smooth at small scales.
				c := int(min(t.Bandwidth.BytesPerSecond/100, bufSize))
				c = max(c, 1)
				if lt.maxChunk == 0 || c < lt.maxChunk {
					lt.maxChunk = c
				}
			case t.Blackhole != nil:
				lt.hold = true
			case t.SlowClose != nil:
				lt.slowClose = max(lt.slowClose, t.SlowClose.Delay)
			}
		}
	}
	return v
}
