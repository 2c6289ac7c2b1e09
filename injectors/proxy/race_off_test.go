//go:build linux && !race

package proxy

const raceEnabled = false
