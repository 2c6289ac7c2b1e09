package kubernetes

import (
	"context"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// SelectedPod is a pod that SelectPods chose.
type SelectedPod struct {
	Namespace, Name, UID, Node string
	// Workload is the pod's top-level workload, nil for a bare pod.
	Workload *injectors.WorkloadRef
}

// Target is the pod in the structured form the recorders read.
func (p SelectedPod) Target() injectors.Target {
	return injectors.Target{Kind: "pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID, Node: p.Node, Workload: p.Workload}
}

// String says which pod it is and where it runs, as podKill's targets do.
func (p SelectedPod) String() string {
	return pod{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Node: p.Node}.String()
}

// SelectPods resolves a pod target and chooses pods by mode and value the way podKill does, with
// the same policy (namespace deny-list, opt-in label, blast radius). It touches nothing. No live
// pod matching is a refusal; so is an RBAC denial. random says how the pick was random (see
// injectors.RandomPicker), "" when it took every candidate; env.Seed repeats it.
func SelectPods(ctx context.Context, env injectors.Env, t runbooks.PodTarget, mode string, value float64) (_ []SelectedPod, random string, _ error) {
	cs, err := Clientset(env)
	if err != nil {
		return nil, "", err
	}
	r := newResolver(cs, env)
	all, _, err := r.podsOf(ctx, t)
	if err != nil {
		return nil, "", Forbidden(err)
	}
	if len(all) == 0 {
		return nil, "", policy.Refusef("target", "no live pod matches %s", targetText(t))
	}
	rng := newRand(env.Seed)
	chosen := choose(all, count(mode, value, len(all), rng), rng)
	if err := r.pol.CheckBlastRadius(footprint(chosen, all)); err != nil {
		return nil, "", err
	}
	out := make([]SelectedPod, len(chosen))
	for i, c := range chosen {
		p := podOf(c.pod, c.wl)
		out[i] = SelectedPod{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Node: p.Node, Workload: p.wl}
	}
	return out, randomText(mode, len(chosen), len(all)), nil
}
