//go:build linux && race

package proxy

// raceEnabled: the race detector slows every memory access several times over, so timing
// assertions at the millisecond level only log instead of failing under -race.
const raceEnabled = true
