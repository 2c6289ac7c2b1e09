package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/faultline-dev/faultline/injectors"
)

// Sweep removes every FAULTLINE-* chain whose owner label names a run owned() does not claim.
func (r *ruleInjector) Sweep(ctx context.Context, owned func(runID string) bool, env injectors.Env) ([]string, error) {
	return sweep(ctx, r.cfg, owned, logger(env))
}

// SweepScope implements injectors.SweepScoper: the iptables kinds built by one Injectors call
// sweep the same chains in the same namespaces.
func (r *ruleInjector) SweepScope() string { return fmt.Sprintf("network/iptables %p", r.cfg) }

func sweep(ctx context.Context, cfg *config, owned func(string) bool, log *slog.Logger) ([]string, error) {
	targets, err := sweepTargets(cfg)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var removed []string
	for _, t := range targets {
		err := t.Do(func() error {
			var errs []error
			for _, fam := range []family{ipv4, ipv6} {
				// filter holds these faults' chains, nat the transparent proxy's REDIRECT chains.
				for _, table := range []string{"filter", "nat"} {
					rm, err := sweepTable(ctx, t, fam, table, owned, log)
					removed = append(removed, rm...)
					if err != nil {
						errs = append(errs, err)
					}
				}
			}
			return errors.Join(errs...)
		})
		if err != nil && t.Path != "" {
			if _, serr := os.Stat(t.Path); errors.Is(serr, os.ErrNotExist) {
				continue // the namespace went away during the sweep, and its chains with it
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep netns %s: %w", t.Label, err))
		}
	}
	return removed, errors.Join(errs...)
}

// Namespaces lists the namespaces Sweep visits: the one faultline runs in (unless
// SweepHostNamespace(false)) and every namespace in the netns directory, each once. Other
// injectors that sweep their own leftovers walk the same list.
func Namespaces(opts ...Option) ([]Target, error) { return sweepTargets(newConfig(opts)) }

// sweepTargets lists the host namespace (if configured) and every namespace in the netns
// directory, each once.
func sweepTargets(cfg *config) ([]Target, error) {
	var out []Target
	seen := map[string]bool{}
	if cfg.sweepHost {
		id, err := nsID(selfNetns)
		if err != nil {
			return nil, fmt.Errorf("identify own network namespace: %w", err)
		}
		out = append(out, Target{Label: "host", ID: id})
		seen[id] = true
	}
	entries, err := os.ReadDir(cfg.netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(cfg.netnsDir, e.Name())
		id, err := nsID(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted while we looked: nothing left in it to sweep
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network namespace %s: %w", path, err))
			continue
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, Target{Label: e.Name(), Path: path, ID: id})
	}
	return out, errors.Join(errs...)
}

// savedTable is the part of `iptables-save -t TABLE` a sweep needs.
type savedTable struct {
	chains []string            // faultline chains, in order
	labels map[string][]string // chain -> its first rule's arguments
	rules  []savedRule         // every rule of the table
}

type savedRule struct {
	chain string
	line  string // as saved, starting with "-A CHAIN"
	jump  string // target chain of -j / -g, if any
}

func parseSave(out string) savedTable {
	st := savedTable{labels: map[string][]string{}}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, ":"+chainPrefix):
			name, _, _ := strings.Cut(line[1:], " ")
			st.chains = append(st.chains, name)
		case strings.HasPrefix(line, "-A "):
			args := splitRule(line)
			if len(args) < 2 {
				continue
			}
			r := savedRule{chain: args[1], line: line}
			for i := 2; i+1 < len(args); i++ {
				if args[i] == "-j" || args[i] == "-g" || args[i] == "--jump" || args[i] == "--goto" {
					r.jump = args[i+1]
				}
			}
			if _, seen := st.labels[r.chain]; !seen && strings.HasPrefix(r.chain, chainPrefix) {
				st.labels[r.chain] = args[2:]
			}
			st.rules = append(st.rules, r)
		}
	}
	return st
}

func labelOf(args []string) (Label, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" {
			return ParseOwnerLabel(args[i+1])
		}
	}
	return Label{}, false
}

// sweepTable removes the unowned faultline chains of one table in one transaction. A transaction
// that fails (something else changed the table meanwhile, e.g. another sweep) is retried once on
// a fresh listing.
func sweepTable(ctx context.Context, t Target, fam family, table string, owned func(string) bool, log *slog.Logger) ([]string, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		out, err := run(ctx, nil, fam.save(), "-t", table)
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "Table does not exist") {
				return nil, nil
			}
			return nil, fmt.Errorf("list %s table %s: %w", fam.iptables(), table, err)
		}
		st := parseSave(string(out))
		doomed := map[string]bool{}
		var removed []string
		for _, c := range st.chains {
			l, ok := labelOf(st.labels[c])
			if !ok {
				log.Warn("leaving a FAULTLINE chain without a faultline owner label alone", "netns", t.Label, "family", fam, "table", table, "chain", c)
				continue
			}
			if owned(l.Run) || OwnerAlive(l.Owner) {
				continue // a live run's chain, whatever ledger it is in
			}
			doomed[c] = true
			removed = append(removed, fmt.Sprintf("netns %s: %s -t %s chain %s (run %s, fault %s)", t.Label, fam.iptables(), table, c, l.Run, l.Fault))
		}
		if len(doomed) == 0 {
			return nil, nil
		}
		lines := []string{"*" + table}
		for _, r := range st.rules {
			if doomed[r.jump] && !doomed[r.chain] {
				lines = append(lines, "-D"+strings.TrimPrefix(r.line, "-A"))
			}
		}
		names := make([]string, 0, len(doomed))
		for c := range doomed {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			lines = append(lines, "-F "+c)
		}
		for _, c := range names {
			lines = append(lines, "-X "+c)
		}
		lines = append(lines, "COMMIT")
		if _, err := run(ctx, []byte(strings.Join(lines, "\n")+"\n"), fam.restore(), "--noflush", "--wait=10"); err != nil {
			lastErr = fmt.Errorf("remove %s: %w", strings.Join(names, ", "), err)
			continue
		}
		for _, r := range removed {
			log.Info("swept an orphaned faultline chain", "what", r)
		}
		return removed, nil
	}
	return nil, lastErr
}
