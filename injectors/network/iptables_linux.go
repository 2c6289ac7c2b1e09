package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// ruleInjector handles the iptables kinds: partition, reject, loss and shard-isolation.
type ruleInjector struct {
	kind string
	cfg  *config
}

func (r *ruleInjector) Kind() string { return r.kind }

// ruleRecord is the ledger record of an iptables fault: everything Revert needs, and nothing
// that grows with the number of rules.
type ruleRecord struct {
	Version  int          `json:"version"`
	Kind     string       `json:"kind"`
	RunID    string       `json:"runID"`
	Fault    string       `json:"fault"`
	Target   Target       `json:"target"`
	Table    string       `json:"table"`
	Chain    string       `json:"chain"`
	Families []familyPlan `json:"families"`
}

type ruleAction struct {
	rec  ruleRecord
	spec any
	// breakFamily, set only by tests, appends a rule iptables refuses (port 70000) to that
	// family's transaction, to exercise a real partial apply.
	breakFamily family
}

func (r *ruleInjector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	if f.Kind() != r.kind {
		return nil, fmt.Errorf("%s injector got a %q fault", r.kind, f.Kind())
	}
	spec := f.Spec()
	if !ValidRunID(env.RunID) {
		return nil, fmt.Errorf("run ID %q cannot label iptables chains: use 1-128 of [A-Za-z0-9._:@+=/-]", env.RunID)
	}
	name := f.Name
	if name == "" {
		name = r.kind
	}
	if err := RequireNetAdmin(); err != nil {
		return nil, err
	}
	nt, _ := networkTargetOf(spec)
	if nt == nil {
		return nil, fmt.Errorf("internal: %T is not an iptables fault spec", spec)
	}
	tgt, err := resolveTarget(r.cfg, nt.Netns, nt.NetnsPath)
	if err != nil {
		return nil, err
	}
	fams, chain, err := plan(r.kind, env.RunID, name, spec)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.kind, name, err)
	}
	a := &ruleAction{
		rec: ruleRecord{Version: 1, Kind: r.kind, RunID: env.RunID, Fault: name, Target: tgt,
			Table: filterTable, Chain: chain, Families: fams},
		spec: spec,
	}
	// Check, without changing anything, that the tools are there and work in the namespace (the
	// listing runs them there) and that the chain is not there already (another live fault with
	// the same run ID and name).
	chains, err := refuseLeftovers(ctx, tgt)
	if err != nil {
		return nil, err
	}
	for _, fp := range fams {
		for _, tool := range []string{fp.Family.iptables(), fp.Family.restore(), fp.Family.save()} {
			if _, err := exec.LookPath(tool); err != nil {
				return nil, policy.Refusef("tool "+tool, "%s is not installed (apt-get install iptables)", tool)
			}
		}
		if slices.Contains(chains[fp.Family], chain) {
			return nil, policy.Refusef("chain", "%s chain %s already exists in netns %s: a fault named %q of run %s is already applied", fp.Family.iptables(), chain, tgt.Label, name, env.RunID)
		}
	}
	return a, nil
}

func (a *ruleAction) Targets() []string {
	var out []string
	for _, fp := range a.rec.Families {
		var hooks []string
		for _, h := range fp.Hooks {
			hooks = append(hooks, h.Chain)
		}
		out = append(out, fmt.Sprintf("netns %s: %s chain %s (%d rules, from %s): %s",
			a.rec.Target.Label, fp.Family.iptables(), a.rec.Chain, len(fp.Rules), strings.Join(hooks, "+"), a.summary()))
	}
	return out
}

func (a *ruleAction) summary() string {
	nt, _ := networkTargetOf(a.spec)
	var b strings.Builder
	switch s := a.spec.(type) {
	case *runbooks.Partition:
		b.WriteString("drop")
	case *runbooks.Reject:
		b.WriteString("reject")
	case *runbooks.Loss:
		fmt.Fprintf(&b, "drop %g%%", s.Probability*100)
	case *runbooks.ShardIsolation:
		fmt.Fprintf(&b, "isolate shard %s: drop", s.Shard)
	}
	dir := nt.Direction
	if dir == "" {
		dir = "both"
	}
	fmt.Fprintf(&b, " %s traffic", dir)
	if nt.Protocol != "" && nt.Protocol != "all" {
		fmt.Fprintf(&b, " %s", nt.Protocol)
	}
	if len(nt.Peers) > 0 {
		fmt.Fprintf(&b, " with %s", strings.Join(nt.Peers, ", "))
	} else {
		b.WriteString(" with any peer")
	}
	if len(nt.Ports) > 0 {
		fmt.Fprintf(&b, " on ports %s", strings.Join(nt.Ports, ", "))
	}
	return b.String()
}

func (a *ruleAction) Record() (json.RawMessage, error) {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return nil, fmt.Errorf("encode %s record: %w", a.rec.Kind, err)
	}
	return b, nil
}

// Describe lists what Apply installed, in `iptables -S` form, one family after the other.
func (a *ruleAction) Describe() []string {
	var out []string
	for _, fp := range a.rec.Families {
		cmd := fp.Family.iptables()
		if a.rec.Target.Path != "" {
			cmd = fmt.Sprintf("[netns %s] %s", a.rec.Target.Label, cmd)
		}
		for _, line := range a.script(fp) {
			if strings.HasPrefix(line, "-") {
				out = append(out, cmd+" "+line)
			}
		}
	}
	return out
}

// script is the iptables-restore input that installs one family's part of the fault.
func (a *ruleAction) script(fp familyPlan) []string {
	// -N, not ":CHAIN": the transaction fails instead of taking over a chain that exists.
	lines := []string{"*" + a.rec.Table, "-N " + a.rec.Chain,
		ruleLine("-A", a.rec.Chain, []string{"-m", "comment", "--comment", OwnerLabel(a.rec.RunID, a.rec.Fault, a.rec.Kind)})}
	for _, r := range fp.Rules {
		lines = append(lines, ruleLine("-A", a.rec.Chain, r))
	}
	if fp.Family == a.breakFamily {
		lines = append(lines, ruleLine("-A", a.rec.Chain, []string{"-p", "tcp", "--dport", "70000", "-j", "DROP"}))
	}
	for _, h := range fp.Hooks {
		lines = append(lines, ruleLine("-I", h.Chain+" 1", h.Rule))
	}
	return append(lines, "COMMIT")
}

// Apply installs the fault family by family, each in one atomic iptables-restore transaction. If
// a family fails, the families before it stay applied until Revert removes them.
func (a *ruleAction) Apply(ctx context.Context, _ injectors.Recorder) error {
	return a.rec.Target.Do(func() error {
		for _, fp := range a.rec.Families {
			script := strings.Join(a.script(fp), "\n") + "\n"
			if _, err := run(ctx, []byte(script), fp.Family.restore(), "--noflush", "--wait=10"); err != nil {
				return fmt.Errorf("apply %s chain %s in netns %s: %w", fp.Family.iptables(), a.rec.Chain, a.rec.Target.Label, err)
			}
		}
		return nil
	})
}

func (r *ruleInjector) Revert(ctx context.Context, raw json.RawMessage, env injectors.Env) error {
	var rec ruleRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode %s record: %w", r.kind, err)
	}
	return revertChain(ctx, rec, logger(env))
}

func revertChain(ctx context.Context, rec ruleRecord, log *slog.Logger) error {
	if !strings.HasPrefix(rec.Chain, chainPrefix) || rec.Table == "" {
		return fmt.Errorf("record names chain %q in table %q: not a faultline chain, refusing to touch it", rec.Chain, rec.Table)
	}
	tgt, gone, err := rec.Target.Locate()
	if err != nil {
		return fmt.Errorf("revert %s: %w", rec.Chain, err)
	}
	if gone {
		log.Info("network namespace is gone, and the fault's rules with it", "netns", rec.Target.Label, "chain", rec.Chain)
		return nil
	}
	return tgt.Do(func() error {
		var errs []error
		for _, fp := range rec.Families {
			if err := revertFamily(ctx, rec, fp); err != nil {
				errs = append(errs, fmt.Errorf("revert %s chain %s in netns %s: %w", fp.Family.iptables(), rec.Chain, rec.Target.Label, err))
			}
		}
		return errors.Join(errs...)
	})
}

// revertFamily unhooks, flushes and deletes the chain in one transaction; if that fails because
// some of it is already gone, it removes whatever remains piece by piece.
func revertFamily(ctx context.Context, rec ruleRecord, fp familyPlan) error {
	lines := []string{"*" + rec.Table}
	for _, h := range fp.Hooks {
		lines = append(lines, ruleLine("-D", h.Chain, h.Rule))
	}
	lines = append(lines, "-F "+rec.Chain, "-X "+rec.Chain, "COMMIT")
	if _, err := run(ctx, []byte(strings.Join(lines, "\n")+"\n"), fp.Family.restore(), "--noflush", "--wait=10"); err == nil {
		return nil
	}
	ipt, err := iptables.New(iptables.IPFamily(fp.Family.proto()), iptables.Timeout(10))
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range fp.Hooks {
		if err := ipt.Delete(rec.Table, h.Chain, h.Rule...); err != nil && !notExist(err) {
			errs = append(errs, fmt.Errorf("unhook from %s: %w", h.Chain, err))
		}
	}
	if err := ipt.ClearAndDeleteChain(rec.Table, rec.Chain); err != nil && !notExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func notExist(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}
