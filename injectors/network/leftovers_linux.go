package network

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/faultline-dev/faultline/safety/policy"
)

// RefuseLeftovers refuses a fault in t while the namespace holds a FAULTLINE-* chain labelled by
// an owner that is gone: a run was killed and nothing recovered it. The ledger that knows of it
// may be another one (another --state-dir), so the target itself is what is checked; applying on
// top would leave the old chain in charge again once the new one is reverted. Chains of live
// owners (a concurrent run) and unlabelled chains are not this check's business.
func RefuseLeftovers(ctx context.Context, t Target) error {
	_, err := refuseLeftovers(ctx, t)
	return err
}

// refuseLeftovers is RefuseLeftovers, returning too the faultline chains of each family's filter
// table: one listing per table answers both this check and whether a fault's own chain is there
// already, where asking iptables each question again would start a process per question (the
// cost that dominates a fault's preparation).
func refuseLeftovers(ctx context.Context, t Target) (map[family][]string, error) {
	var found []string
	filterChains := map[family][]string{}
	err := t.Do(func() error {
		for _, fam := range []family{ipv4, ipv6} {
			if _, err := exec.LookPath(fam.save()); err != nil {
				continue // a missing tool is refused by the caller's own check
			}
			for _, table := range []string{"filter", "nat"} {
				out, err := run(ctx, nil, fam.save(), "-t", table)
				if err != nil {
					if strings.Contains(err.Error(), "does not exist") {
						continue
					}
					return fmt.Errorf("list %s table %s in netns %s: %w", fam.iptables(), table, t.Label, err)
				}
				st := parseSave(string(out))
				if table == "filter" {
					filterChains[fam] = st.chains
				}
				for _, c := range st.chains {
					l, ok := labelOf(st.labels[c])
					if !ok || OwnerAlive(l.Owner) {
						continue
					}
					found = append(found, fmt.Sprintf("%s -t %s chain %s (run %s, fault %s, kind %s)", fam.iptables(), table, c, l.Run, l.Fault, l.Kind))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(found) > 0 {
		return nil, policy.Refusef("leftovers", "netns %s still holds un-reverted faultline rules whose run is gone: %s; run `faultline recover` first (with any existing --state-dir: it removes chains no live run owns)",
			t.Label, strings.Join(found, "; "))
	}
	return filterChains, nil
}
