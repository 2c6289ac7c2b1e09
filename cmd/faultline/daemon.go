package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/history/pgstore"
	"github.com/faultline-dev/faultline/internal/metrics"
	"github.com/faultline-dev/faultline/safety/ledger"
)

func (m *Main) daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run scheduled game days: cron or chaos-monkey schedules, windows, blackouts, an API and history",
		Description: `Loads a daemon config (strictly: every schedule compiled, every runbook validated), reverts
whatever its ledger still holds, then starts runs on schedule, serves the HTTP API
(status, history, trigger, halt, the kill switch, pause/resume), /metrics, /healthz and
/readyz, and keeps every result in its history.

With leaderElection and ledger.backend kubernetes, run several replicas: only the holder of
the Lease schedules, and a new leader first reverts what a dead one left applied.

Check the calendar first:  faultline schedule --config FILE --next 10
SIGINT/SIGTERM halt every running run (all faults reverted) before the daemon exits.

SIGHUP, POST /api/v1/reload or a change of the config file or a runbook it names (checked
every --config-watch-interval) reloads the schedules and runbooks. A config that does not
validate is refused and the old one keeps running; a running experiment is never interrupted.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Required: true, Usage: "daemon config file"},
			&cli.StringFlag{Name: "identity", EnvVars: []string{"POD_NAME"}, Usage: "this replica's name in the Lease and the ledger (default: host name and pid)"},
			&cli.DurationFlag{Name: "config-watch-interval", Value: 5 * time.Second, Usage: "how often to check the config file and its runbooks for changes, which reload them (0: only SIGHUP and the API reload)"},
		}, kubeFlags()...),
		Action: m.daemon,
	}
}

func (m *Main) daemon(c *cli.Context) error {
	log, err := m.logger(c)
	if err != nil {
		return err
	}
	lc, err := daemon.LoadConfig(c.String("config"))
	if err != nil {
		fmt.Fprintln(m.Stderr, err)
		return exitWith(exitInvalid, errors.New("the daemon config is not valid"))
	}
	stateDir := lc.StateDir
	if stateDir == "" {
		stateDir = c.String("state-dir")
	}
	identity := c.String("identity")
	if identity == "" {
		host, _ := os.Hostname()
		identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	kc := kubeClient(c)
	reg, err := registry()
	if err != nil {
		return exitWith(exitAborted, err)
	}

	// The incarnation tells this process from an earlier one under the same identity (a pod's
	// restarted container): the ledger entries and the Lease it writes carry it.
	incarnation := daemon.NewIncarnation()
	var led ledger.Ledger
	var d *daemon.Daemon
	opts := daemon.Options{Config: lc, ConfigPath: c.String("config"), Registry: reg, Logger: log, Identity: identity}
	if lc.Ledger.Backend == "kubernetes" {
		cs, err := kc.Clientset()
		if err != nil {
			return exitWith(exitInvalid, fmt.Errorf("ledger.backend kubernetes: %w", err))
		}
		ns := lc.Ledger.Namespace
		if ns == "" {
			ns = kc.SelfNamespace()
		}
		if ns == "" {
			return exitWith(exitInvalid, errors.New("ledger.backend kubernetes needs ledger.namespace (or run in a pod)"))
		}
		led = &ledger.KubeLedger{Client: cs, Namespace: ns}
		claims := &daemon.ConfigMapClaimer{Client: cs, Namespace: ns, TTL: max(lc.Ledger.Retention.D(), 48*time.Hour)}
		opts.Claimer, opts.PriorStarts = claims, claims.Starts
		if lc.LeaderElection != nil {
			// A copy: the config keeps the file's values, which a reload compares with.
			leCopy := *lc.LeaderElection
			le := &leCopy
			if le.Namespace == "" {
				le.Namespace = ns
			}
			holder := daemon.Holder(identity, incarnation)
			opts.Elect = daemon.LeaseElector(cs, *le, holder, func(h string) { d.ObserveLeader(h) })
			opts.Orphaned = daemon.NotSelf(identity, incarnation)
			opts.Coordinator = &daemon.KubeCoordinator{Client: cs, Namespace: le.Namespace, LeaseName: le.LeaseName, Holder: holder, Log: log}
		}
	} else {
		fl, err := ledger.OpenFile(ledgerPath(stateDir))
		if err != nil {
			return exitWith(exitAborted, fmt.Errorf("%w; the daemon does not start without its ledger", err))
		}
		led = fl
	}
	eng, met := newEngine(reg, led, log)
	withKube(eng, kc)
	eng.Owner = ledger.Self()
	eng.Owner.ID, eng.Owner.Incarnation = identity, incarnation
	opts.Engine, opts.Env = eng, eng.InjectorEnv
	opts.Metrics = metrics.NewDaemon(met.Registry)
	opts.ReloadMetrics = metrics.NewReload(met.Registry)
	opts.ReloadMetrics.Loaded(time.Now())

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hist, err := openHistory(ctx, lc, stateDir, log)
	if err != nil {
		return exitWith(exitAborted, err)
	}
	defer hist.Close()
	opts.Results = hist
	opts.PauseFile = filepath.Join(stateDir, "paused.json")
	opts.PendingFile = filepath.Join(stateDir, "history-pending.json")
	if opts.PriorStarts == nil || lc.History.Postgres != nil {
		// A shared history has every replica's starts, including a run whose replica died.
		opts.PriorStarts = historyStarts(hist)
	}

	audit := lc.API.AuditLog
	if audit == "" {
		audit = filepath.Join(stateDir, "audit.log")
	}
	d = daemon.New(opts)
	srv, err := api.New(api.Config{TokenFile: lc.API.TokensFile, AuditLog: audit, TLSCertFile: lc.API.CertFile,
		TLSKeyFile: lc.API.KeyFile, MetricsAuth: lc.API.MetricsAuth}, d, hist, met.Registry, log)
	if err != nil {
		return exitWith(exitInvalid, err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", lc.API.Address)
	if err != nil {
		return exitWith(exitInvalid, fmt.Errorf("api.address: %w", err))
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && lc.API.CertFile == "" && !tcp.IP.IsLoopback() {
		log.Warn("the API is served without TLS on a non-loopback address: bearer tokens travel in clear; set api.certFile and api.keyFile")
	}
	// Before the line below, which tells scripts the daemon is up: a SIGHUP must not kill it.
	reloads := watchReloads(d, srv)
	defer reloads.stop()
	// A stable line on stderr, whatever the log level: scripts and tests read the bound address.
	fmt.Fprintf(m.Stderr, "faultline daemon: API listening on %s (identity %s, incarnation %s)\n", ln.Addr(), identity, incarnation)
	apiDone := make(chan error, 1)
	go func() { apiDone <- srv.Serve(ctx, ln) }()
	go m.daemonHousekeeping(ctx, srv, hist, log)
	go reloads.run(ctx, c.Duration("config-watch-interval"))

	runErr := d.Run(ctx)
	stop()
	if err := <-apiDone; err != nil {
		log.Error("api server", "err", err)
	}
	if runErr != nil {
		return exitWith(exitAborted, runErr)
	}
	return nil
}

// daemonHousekeeping reloads the API tokens on SIGHUP (they are also reloaded when the file
// changes) and applies history retention by age hourly, so that it holds when no run finishes.
func (m *Main) daemonHousekeeping(ctx context.Context, srv *api.Server, hist history.Backend, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := srv.ReloadTokens(); err != nil {
				log.Error("reload API tokens on SIGHUP", "err", err)
			} else {
				log.Info("API tokens reloaded")
			}
		case <-tick.C:
			if n, err := hist.Compact(ctx); err != nil {
				log.Error("history retention", "err", err)
			} else if n > 0 {
				log.Info("history retention dropped old runs", "runs", n)
			}
		}
	}
}

// historyStarts reads the earlier scheduled starts from history, so that the per-day cap
// survives a restart (and, with a shared history, a failover).
func historyStarts(hist history.Backend) func(ctx context.Context, sched string, since time.Time) ([]time.Time, error) {
	return func(ctx context.Context, sched string, since time.Time) ([]time.Time, error) {
		return history.ScheduledStarts(ctx, hist, sched, since)
	}
}

// openHistory opens the history store the config names: PostgreSQL (shared by the replicas,
// migrated at start) or the bbolt file in the state directory.
func openHistory(ctx context.Context, lc *daemon.LoadedConfig, stateDir string, log *slog.Logger) (history.Backend, error) {
	opts := history.Options{Retention: history.Retention{MaxRuns: lc.History.MaxRuns, MaxAge: lc.History.MaxAge.D()}}
	if pg := lc.History.Postgres; pg != nil {
		dsn, err := pg.ReadDSN()
		if err != nil {
			return nil, err
		}
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return pgstore.Open(octx, dsn, opts, log)
	}
	return history.Open(ctx, filepath.Join(stateDir, "history.db"), opts)
}
