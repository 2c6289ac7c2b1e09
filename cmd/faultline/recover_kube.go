package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// recoverLedgerFlags choose the ledger recover reads: the CLI's file (default) or the daemon's
// ConfigMaps in the cluster.
func recoverLedgerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ledger", Value: "file", Usage: "which ledger to recover: file (the one in --state-dir) or kubernetes (the daemon's, in --namespace)"},
		&cli.StringFlag{Name: "namespace", Usage: "with --ledger kubernetes: the daemon's namespace (default: from --daemon-config, else the in-cluster namespace)"},
		&cli.StringFlag{Name: "lease-name", Value: "faultline-daemon", Usage: "with --ledger kubernetes: the daemon's Lease; faults of the replica holding it are left alone (halt them instead)"},
		&cli.StringFlag{Name: "daemon-config", Usage: "read the ledger backend, namespace and Lease from this daemon config"},
	}
}

// recoverLedger opens the ledger the flags name, and says which owners are alive. In the cluster
// an owner is alive while it holds the daemon's Lease (with its incarnation): a pid means nothing
// from another machine, and a dead leader's entries are exactly what recover is for.
func recoverLedger(c *cli.Context) (ledger.Ledger, func(ledger.Owner) bool, error) {
	backend, ns, leaseName, leaseNS := c.String("ledger"), c.String("namespace"), c.String("lease-name"), ""
	if path := c.String("daemon-config"); path != "" {
		// Only the ledger and Lease are read: the runbooks the config names need not exist here
		// (a laptop recovering for a cluster whose pods are gone).
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, exitWith(exitInvalid, fmt.Errorf("--daemon-config: %w", err))
		}
		var lc daemon.Config
		if err := yaml.Unmarshal(b, &lc); err != nil {
			return nil, nil, exitWith(exitInvalid, fmt.Errorf("--daemon-config %s: %w", path, err))
		}
		if !c.IsSet("ledger") && lc.Ledger.Backend != "" {
			backend = lc.Ledger.Backend
		}
		if ns == "" {
			ns = lc.Ledger.Namespace
		}
		if le := lc.LeaderElection; le != nil {
			if !c.IsSet("lease-name") && le.LeaseName != "" {
				leaseName = le.LeaseName
			}
			leaseNS = le.Namespace
		}
	}
	switch backend {
	case "", "file":
		// A missing ledger is a mistyped --state-dir far more often than a clean system: say so
		// rather than "nothing to recover", and create nothing.
		l, err := openExistingLedger(c.String("state-dir"))
		if err != nil {
			return nil, nil, exitWith(exitInvalid, err)
		}
		return l, nil, nil
	case "kubernetes":
	default:
		return nil, nil, exitWith(exitInvalid, fmt.Errorf("--ledger %q: use file or kubernetes", backend))
	}
	kc := kubeClient(c)
	if ns == "" {
		ns = kc.SelfNamespace()
	}
	if ns == "" {
		return nil, nil, exitWith(exitInvalid, errors.New("--ledger kubernetes needs --namespace (the daemon's namespace) or --daemon-config"))
	}
	if leaseNS == "" {
		leaseNS = ns
	}
	cs, err := kc.Clientset()
	if err != nil {
		return nil, nil, exitWith(exitInvalid, fmt.Errorf("--ledger kubernetes: %w", err))
	}
	holder := ""
	l, err := cs.CoordinationV1().Leases(leaseNS).Get(c.Context, leaseName, metav1.GetOptions{})
	if err == nil && l.Spec.HolderIdentity != nil && l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil &&
		time.Since(l.Spec.RenewTime.Time) < time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second {
		holder = *l.Spec.HolderIdentity
	}
	live := func(o ledger.Owner) bool {
		switch {
		case o.ID == "":
			return o.Alive() // a CLI run's entry: its process on this host
		case holder == "":
			return false
		case o.Incarnation == "":
			return daemon.HolderIdentity(holder) == o.ID // written before incarnations existed
		default:
			return holder == daemon.Holder(o.ID, o.Incarnation)
		}
	}
	return &ledger.KubeLedger{Client: cs, Namespace: ns}, live, nil
}
