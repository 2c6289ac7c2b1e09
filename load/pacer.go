package load

import (
	"math"
	"time"
)

// pacer paces hits at a rate that rises linearly from `from` to `to` over `ramp`, then stays at
// `to`; it stops after max hits. vegeta's LinearPacer keeps rising, so the plateau needs our own.
type pacer struct {
	from, to float64 // requests per second
	ramp     time.Duration
	max      uint64
}

// expected is how many hits should have been sent by elapsed.
func (p pacer) expected(elapsed time.Duration) float64 {
	t := elapsed.Seconds()
	r := p.ramp.Seconds()
	if r <= 0 {
		return p.to * t
	}
	if t <= r {
		return p.from*t + (p.to-p.from)*t*t/(2*r)
	}
	return (p.from+p.to)*r/2 + p.to*(t-r)
}

// Rate is the requested rate at elapsed, in hits per second.
func (p pacer) Rate(elapsed time.Duration) float64 {
	if elapsed >= p.ramp || p.ramp <= 0 {
		return p.to
	}
	return p.from + (p.to-p.from)*elapsed.Seconds()/p.ramp.Seconds()
}

// Pace implements vegeta's Pacer: how long to wait before the next hit.
func (p pacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if p.max > 0 && hits >= p.max {
		return 0, true
	}
	due := p.expected(elapsed)
	if float64(hits) < due {
		return 0, false
	}
	rate := p.Rate(elapsed)
	if rate <= 0 {
		// Ramping up from zero: wait for the ramp to make the first hit due.
		rate = math.Max((p.to-p.from)/math.Max(p.ramp.Seconds(), 1e-9)*1e-3, 1e-3)
	}
	// The next hit is due once expected(elapsed) exceeds hits; with the current rate that is
	// this far away (exact on the plateau, close enough on a ramp since Pace is asked again).
	wait := time.Duration((float64(hits) - due) / rate * float64(time.Second))
	return max(wait, time.Microsecond), false
}
