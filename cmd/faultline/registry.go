package main

import (
	"log/slog"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/injectors/pod"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/injectors/proxy"
	"github.com/faultline-dev/faultline/injectors/proxyserver"
	"github.com/faultline-dev/faultline/injectors/remote"
	"github.com/faultline-dev/faultline/load"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// registry lists every injector compiled into this build. It is the one place that names
// concrete fault kinds; the engine and recover only see the registry.
func registry() (*injectors.Registry, error) {
	all := []injectors.Injector{
		process.Kill{},
		process.Pause{},
		kubernetes.PodKill{},
		kubernetes.ShardOutage{},
	}
	all = append(all, network.Injectors()...)
	all = append(all, proxy.Injectors()...)
	all = append(all, proxyserver.Injectors()...)
	all = append(all, pod.Injectors()...)
	all = append(all, remote.Injector{})
	return injectors.NewRegistry(all...)
}

// probes lists every guardrail probe compiled into this build.
func probes(log *slog.Logger) (guardrail.Probes, guardrail.ProbeEnv) {
	p := guardrail.DefaultProbes()
	p[load.ProbeKind] = load.NewProbe
	return p, guardrail.ProbeEnv{Logger: log}
}
