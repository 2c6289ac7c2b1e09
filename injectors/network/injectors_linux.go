package network

import "github.com/faultline-dev/faultline/injectors"

// Injectors returns one injector per kind in this package: partition, reject, loss,
// shard-isolation and bandwidth. The iptables kinds also implement injectors.Sweeper: each sweeps
// every faultline chain, whatever its kind, so they share one sweep scope.
func Injectors(opts ...Option) []injectors.Injector {
	c := newConfig(opts)
	return []injectors.Injector{
		&ruleInjector{kind: KindPartition, cfg: c},
		&ruleInjector{kind: KindReject, cfg: c},
		&ruleInjector{kind: KindLoss, cfg: c},
		&ruleInjector{kind: KindShardIsolation, cfg: c},
		&bandwidthInjector{cfg: c},
	}
}
