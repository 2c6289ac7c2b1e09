package network

import (
	"log/slog"
	"time"

	"github.com/faultline-dev/faultline/injectors"
)

// Option adjusts the injectors built by Injectors.
type Option func(*config)

type config struct {
	netnsDir  string
	sweepHost bool
}

// DefaultNetnsDir is where `ip netns` keeps named network namespaces.
const DefaultNetnsDir = "/var/run/netns"

// NetnsDir sets the directory in which runbook netns names are looked up and whose namespaces
// Sweep visits (default /var/run/netns). Tests point it at a directory of their own.
func NetnsDir(dir string) Option { return func(c *config) { c.netnsDir = dir } }

// SweepHostNamespace sets whether Sweep also visits the namespace faultline runs in (default true).
func SweepHostNamespace(on bool) Option { return func(c *config) { c.sweepHost = on } }

func newConfig(opts []Option) *config {
	c := &config{netnsDir: DefaultNetnsDir, sweepHost: true}
	for _, o := range opts {
		o(c)
	}
	return c
}

// The fault kinds, as runbooks name them.
const (
	KindPartition      = "partition"
	KindReject         = "reject"
	KindLoss           = "loss"
	KindShardIsolation = "shard-isolation"
	KindBandwidth      = "bandwidth"
)

func logger(env injectors.Env) *slog.Logger {
	if env.Logger != nil {
		return env.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// defaultLatency bounds the tbf queue when a bandwidth fault sets neither limit nor latency.
const defaultLatency = 50 * time.Millisecond
