package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strconv"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/faultline-dev/faultline/safety/policy"
)

// opTimeout bounds one apply or revert; they run detached from the request, so that a client
// going away mid-apply leaves either a held fault or nothing, never half of one.
const opTimeout = 2 * time.Minute

// Apply applies a fault and holds it on its lease. It returns created = false with the fault
// already held when the same id was applied before. A *statusError says why it refused.
func (a *Agent) Apply(ctx context.Context, req agentapi.FaultRequest) (f agentapi.Fault, created bool, err error) {
	if err := a.validate(&req); err != nil {
		return f, false, err
	}
	if f, ok, err := a.existing(req); ok || err != nil {
		return f, false, err
	}
	// Resolving a pod may take a runtime round trip: done before taking the lock.
	path, pausePID, err := a.resolve(ctx, req.Target)
	if err != nil {
		return f, false, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	tgt, err := a.target(path)
	if err != nil {
		return f, false, err
	}
	// The fault's and its namespace's locks, not one for the agent: pods apply in parallel.
	unlock, err := a.lockFault(ctx, req.ID, tgt)
	if err != nil {
		return f, false, fmt.Errorf("fault %s: %w", req.ID, err)
	}
	defer unlock()
	if f, ok, err := a.existing(req); ok || err != nil {
		return f, false, err
	}
	fault, inj, env, act, err := a.prepare(ctx, req, path)
	if err != nil {
		return f, false, err
	}
	record, err := act.Record()
	if err != nil {
		return f, false, fmt.Errorf("record of fault %s: %w", req.ID, err)
	}
	now := time.Now()
	h := &held{record: record, target: tgt, f: agentapi.Fault{
		ID: req.ID, RunID: req.RunID, Owner: req.Owner, Kind: fault.Kind(), Name: fault.Name,
		State: ledger.StateRecorded, Target: req.Target,
		Netns:     agentapi.Netns{Path: path, ID: tgt.ID, PausePID: pausePID},
		ExpiresAt: now.Add(req.Lease.D()),
	}}
	mb, err := json.Marshal(meta{Fault: h.f, NetTarget: tgt})
	if err != nil {
		return f, false, fmt.Errorf("encode fault %s: %w", req.ID, err)
	}
	entry := &ledger.Entry{
		ID: req.ID, RunID: req.RunID, Runbook: "agent", Experiment: a.cfg.NodeName, Fault: fault.Name,
		Kind: fault.Kind(), Targets: act.Targets(), State: ledger.StateRecorded, Record: record,
		Owner: a.owner(), RecordedAt: now, Meta: mb,
	}
	if err := a.lw.Put(ctx, entry); err != nil {
		a.m.errors.WithLabelValues("ledger").Inc()
		return f, false, fmt.Errorf("nothing applied: %w", err)
	}
	rec := func(ctx context.Context, r json.RawMessage) error {
		h.record = r
		err := a.lw.Modify(ctx, req.ID, func(e *ledger.Entry) { e.Record = r })
		if err != nil {
			a.m.errors.WithLabelValues("ledger").Inc()
		}
		return err
	}
	if err := act.Apply(ctx, rec); err != nil {
		a.m.errors.WithLabelValues("apply").Inc()
		rerr := inj.Revert(ctx, h.record, env)
		h.f.State, h.f.RevertReason, h.f.RevertedAt = agentapi.StateReverted, "apply failed", time.Now()
		if rerr != nil {
			h.f.State, h.f.RevertError = ledger.StateRevertFailed, rerr.Error()
			h.retryAt = time.Now().Add(retryBackoff)
			a.mu.Lock()
			a.faults[req.ID] = h
			a.mu.Unlock()
			a.wake()
		}
		_ = a.writeMeta(ctx, h, func(e *ledger.Entry) {
			e.State, e.LastError = h.f.State, errors.Join(err, rerr).Error()
			if rerr == nil {
				e.RevertedAt = &h.f.RevertedAt
			}
		})
		a.log.Error("apply failed", "id", req.ID, "run", req.RunID, "kind", fault.Kind(), "netns", tgt.Label, "err", err, "revertErr", rerr)
		return f, false, fmt.Errorf("apply %s in %s: %w", fault.Kind(), tgt.Label, errors.Join(err, rerr))
	}
	applied := time.Now()
	h.f.State, h.f.AppliedAt, h.f.ExpiresAt = agentapi.StateApplied, applied, applied.Add(req.Lease.D())
	if d, ok := act.(injectors.Describer); ok {
		h.f.Describe = d.Describe()
	}
	a.mu.Lock()
	a.faults[req.ID] = h
	a.mu.Unlock()
	a.m.held.Inc()
	if err := a.writeMeta(ctx, h, func(e *ledger.Entry) { e.State, e.AppliedAt = ledger.StateApplied, &applied }); err != nil {
		// The fault is applied and in the ledger as recorded, with its first expiry: a restart
		// still reverts it. The caller learns that the agent's disk is failing.
		a.log.Error("ledger: fault applied but not marked", "id", req.ID, "err", err)
	}
	a.wake()
	a.log.Info("fault applied", "id", req.ID, "run", req.RunID, "owner", req.Owner, "kind", fault.Kind(), "netns", tgt.Label, "netnsID", tgt.ID, "lease", req.Lease.D(), "expiresAt", h.f.ExpiresAt)
	return a.view(h), true, nil
}

// target resolves the namespace at path ("" is the agent's own) to its identity.
func (a *Agent) target(path string) (network.Target, error) {
	tgt, err := network.ResolveTarget("", path, network.NetnsDir(a.cfg.NetnsDir))
	if err != nil {
		return tgt, refusal(err)
	}
	return tgt, nil
}

// prepare turns a request into the injector's action in the namespace at path, touching nothing.
func (a *Agent) prepare(ctx context.Context, req agentapi.FaultRequest, path string) (runbooks.Fault, injectors.Injector, injectors.Env, injectors.Action, error) {
	fault := req.Fault
	if fault.Name == "" {
		fault.Name = req.ID
	}
	fault.SetNetns("", path)
	inj, err := a.reg.Get(fault.Kind())
	if err != nil {
		return fault, nil, injectors.Env{}, nil, badf("kind", "%v", err)
	}
	env := a.env(req.RunID)
	env.Seed, env.Policy.MaxTargets = req.Seed, req.MaxTargets
	act, err := inj.Prepare(ctx, fault, env)
	var r *policy.RefusedError
	if errors.As(err, &r) && r.Rule == "target" && contains(processKinds, fault.Kind()) {
		// No process is there to fault: for a process fault, its target is not found.
		return fault, nil, injectors.Env{}, nil, statusf(http.StatusNotFound, r.Rule, "%s", r.Msg)
	}
	if err != nil {
		return fault, nil, injectors.Env{}, nil, refusal(err)
	}
	return fault, inj, env, act, nil
}

// Plan answers what Apply would do with req, applying nothing and holding nothing: the fault in
// state planned, its describe listing the targets the agent selected (which processes). A run's
// dry run and its preparation ask it, so that a namespace or process missing on any host refuses
// the run before any host is touched.
func (a *Agent) Plan(ctx context.Context, req agentapi.FaultRequest) (agentapi.Fault, error) {
	if err := a.validate(&req); err != nil {
		return agentapi.Fault{}, err
	}
	path, pausePID, err := a.resolve(ctx, req.Target)
	if err != nil {
		return agentapi.Fault{}, err
	}
	tgt, err := a.target(path)
	if err != nil {
		return agentapi.Fault{}, err
	}
	fault, _, _, act, err := a.prepare(ctx, req, path)
	if err != nil {
		return agentapi.Fault{}, err
	}
	return agentapi.Fault{ID: req.ID, RunID: req.RunID, Owner: req.Owner, Kind: fault.Kind(), Name: fault.Name,
		State: agentapi.StatePlanned, Target: req.Target, Netns: agentapi.Netns{Path: path, ID: tgt.ID, PausePID: pausePID},
		Describe: act.Targets()}, nil
}

// validate checks a request against the API's rules and this agent's role.
func (a *Agent) validate(req *agentapi.FaultRequest) error {
	if err := validateRequest(req, a.cfg.MaxLease); err != nil {
		return err
	}
	if contains(processKinds, req.Fault.Kind()) && a.cfg.Pods != nil {
		// With hostPID, the processes this agent sees are the node's: kubelet, the runtime, every
		// pod's. Process faults are for a plain host's agent, whose operator chose them.
		return statusf(http.StatusForbidden, "process", "this agent serves pods (a container runtime is configured): process faults are accepted only by an agent started with --host-only")
	}
	return nil
}

// existing returns the fault held under req.ID, if any; a different request under the same id is
// a conflict.
func (a *Agent) existing(req agentapi.FaultRequest) (agentapi.Fault, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.existingLocked(req)
}

func (a *Agent) existingLocked(req agentapi.FaultRequest) (agentapi.Fault, bool, error) {
	h, ok := a.faults[req.ID]
	if !ok {
		return agentapi.Fault{}, false, nil
	}
	if h.f.RunID != req.RunID || !reflect.DeepEqual(h.f.Target, req.Target) || h.f.Kind != req.Fault.Kind() {
		return agentapi.Fault{}, false, statusf(http.StatusConflict, "id", "id %s is already used by another fault (run %s, %s)", req.ID, h.f.RunID, h.f.Kind)
	}
	if h.f.State != agentapi.StateApplied {
		return agentapi.Fault{}, false, statusf(http.StatusConflict, "id", "fault %s was already reverted (%s): apply it under a new id", req.ID, h.f.RevertReason)
	}
	return h.f, true, nil
}

// resolve turns a request's target into a namespace path ("" is the agent's own namespace).
func (a *Agent) resolve(ctx context.Context, t agentapi.Target) (path string, pausePID int, err error) {
	switch {
	case t.Host:
		return "", 0, nil
	case t.Netns != "":
		return filepath.Join(a.cfg.NetnsDir, t.Netns), 0, nil
	}
	if a.cfg.Pods == nil {
		return "", 0, statusf(http.StatusBadRequest, "target", "this agent serves a plain host (no container runtime): target a netns or the host")
	}
	p, err := a.cfg.Pods.Resolve(ctx, t.Pod.Namespace, t.Pod.Name, t.Pod.UID)
	switch {
	case errors.Is(err, podnetns.ErrNotOnNode):
		return "", 0, statusf(http.StatusForbidden, "node", "pod %s/%s is not on node %s: %v", t.Pod.Namespace, t.Pod.Name, a.cfg.NodeName, err)
	case errors.Is(err, podnetns.ErrNotReady):
		return "", 0, statusf(http.StatusNotFound, "pod", "%v", err)
	case err != nil:
		a.m.errors.WithLabelValues("resolve").Inc()
		return "", 0, fmt.Errorf("resolve pod %s/%s: %w", t.Pod.Namespace, t.Pod.Name, err)
	}
	return p.Netns, p.PausePID, nil
}

// refusal maps an injector's refusal to the API: a namespace that does not exist is 404, a
// fault already in place 409, anything else 400. Other errors pass.
func refusal(err error) error {
	var r *policy.RefusedError
	if !errors.As(err, &r) {
		return err
	}
	switch r.Rule {
	case "netns":
		return statusf(http.StatusNotFound, r.Rule, "%s", r.Msg)
	case "chain", "target", "leftovers":
		return statusf(http.StatusConflict, r.Rule, "%s", r.Msg)
	}
	return statusf(http.StatusBadRequest, r.Rule, "%s", r.Msg)
}

func (a *Agent) owner() ledger.Owner {
	o := ledger.Self()
	o.ID = "faultline-agent"
	if a.cfg.NodeName != "" {
		o.ID += "/" + a.cfg.NodeName
	}
	o.Incarnation = strconv.Itoa(o.PID) + "-" + strconv.FormatUint(o.Start, 10)
	return o
}
