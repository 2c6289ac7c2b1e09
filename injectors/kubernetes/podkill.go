package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	k8s "k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// PodKill is the pod-kill injector: delete pods chosen by mode, once or every interval; their
// controllers replace them. A kill cannot be reverted; the ledger records who was hit.
type PodKill struct{}

// Kind implements injectors.Injector.
func (PodKill) Kind() string { return "pod-kill" }

// maxRecorded bounds the pods a sustained kill keeps in its ledger record (the latest ones).
const maxRecorded = 500

type podKillAction struct {
	spec   runbooks.PodKill
	env    injectors.Env
	cs     k8s.Interface
	rng    *rand.Rand
	picked []pod
	random string // how the first pick was random (see injectors.RandomPicker)

	hit   []pod // every pod killed so far (the last maxRecorded)
	total int
}

// Prepare implements injectors.Injector: it resolves the candidates, chooses the pods and checks
// the policy, touching nothing.
func (PodKill) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := *f.PodKill
	cs, err := Clientset(env)
	if err != nil {
		return nil, err
	}
	a := &podKillAction{spec: spec, env: env, cs: cs, rng: newRand(env.Seed)}
	picked, n, err := a.pick(ctx)
	if err != nil {
		return nil, Forbidden(err)
	}
	a.picked, a.random = picked, randomText(spec.Mode, len(picked), n)
	return a, nil
}

// pick resolves and chooses afresh, and checks the policy; it also returns how many candidates
// there were.
func (a *podKillAction) pick(ctx context.Context) ([]pod, int, error) {
	r := newResolver(a.cs, a.env)
	all, _, err := r.podsOf(ctx, a.spec.PodTarget)
	if err != nil {
		return nil, 0, err
	}
	if len(all) == 0 {
		return nil, 0, policy.Refusef("target", "no live pod matches %s", targetText(a.spec.PodTarget))
	}
	chosen := choose(all, count(a.spec.Mode, a.spec.Value, len(all), a.rng), a.rng)
	if err := r.pol.CheckBlastRadius(footprint(chosen, all)); err != nil {
		return nil, 0, err
	}
	out := make([]pod, len(chosen))
	for i, c := range chosen {
		out[i] = podOf(c.pod, c.wl)
	}
	return out, len(all), nil
}

func (a *podKillAction) Targets() []string { return describePods(a.picked) }

// RandomPick implements injectors.RandomPicker.
func (a *podKillAction) RandomPick() string { return a.random }

// TargetRefs implements injectors.TargetLister: the pods the first round kills.
func (a *podKillAction) TargetRefs() []injectors.Target { return podTargets(a.picked) }

type podKillRecord struct {
	GracePeriod *int64 `json:"gracePeriodSeconds,omitempty"`
	Killed      int    `json:"killed"`
	Pods        []pod  `json:"pods"`
}

// Record has nothing to undo: a kill is not revertible, but the ledger still says who was hit.
func (a *podKillAction) Record() (json.RawMessage, error) {
	return json.Marshal(podKillRecord{GracePeriod: gracePeriod(a.spec.GracePeriod), Killed: len(a.picked), Pods: a.picked})
}

func (a *podKillAction) Apply(ctx context.Context, _ injectors.Recorder) error {
	_, err := a.kill(ctx, a.picked)
	return err
}

// kill deletes the pods and returns those it deleted.
func (a *podKillAction) kill(ctx context.Context, ps []pod) ([]pod, error) {
	done, err := deletePods(ctx, a.cs, ps, gracePeriod(a.spec.GracePeriod))
	a.hit = lastN(append(a.hit, done...), maxRecorded)
	a.total += len(done)
	return done, err
}

func (a *podKillAction) Describe() []string {
	g := "each pod's own grace period"
	if a.spec.GracePeriod != nil {
		g = fmt.Sprintf("grace period %s", a.spec.GracePeriod)
	}
	return []string{fmt.Sprintf("deleted %d pod(s), %s", len(a.picked), g)}
}

// Sustain kills again every interval, choosing afresh each time: the replacement the ReplicaSet
// started is a new candidate, the way chaos monkey keeps hitting a service. A round the policy
// refuses (the workload shrank, a label changed) kills nothing and is reported.
func (a *podKillAction) Sustain(ctx context.Context, rec injectors.Recorder, report func(injectors.Event)) error {
	if a.spec.Interval == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(a.spec.Interval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		picked, _, err := a.pick(ctx)
		var refused *policy.RefusedError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &refused):
			report(injectors.Event{Time: time.Now(), Message: "no pod killed this round: " + err.Error()})
			continue
		case err != nil:
			return err
		}
		// The ledger says who is about to be hit before the kill, as for the first round.
		b, err := json.Marshal(podKillRecord{GracePeriod: gracePeriod(a.spec.GracePeriod), Killed: a.total + len(picked),
			Pods: lastN(append(append([]pod(nil), a.hit...), picked...), maxRecorded)})
		if err != nil {
			return fmt.Errorf("encode pod-kill record: %w", err)
		}
		if err := rec(ctx, b); err != nil {
			return err
		}
		done, err := a.kill(ctx, picked)
		if err != nil && ctx.Err() == nil {
			return err
		}
		report(injectors.Event{Time: time.Now(), Message: fmt.Sprintf("killed %d pod(s)", len(done)), Targets: describePods(done), Subjects: podTargets(done)})
	}
}

// Revert implements injectors.Injector; a deleted pod cannot be brought back (its controller
// replaces it).
func (PodKill) Revert(context.Context, json.RawMessage, injectors.Env) error { return nil }

func describePods(ps []pod) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
