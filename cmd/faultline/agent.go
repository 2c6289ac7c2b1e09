package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
)

const agentExamples = `
EXAMPLES:
   # On Kubernetes, as the DaemonSet in deploy/kustomize/components/agent runs it:
   faultline agent --node-name "$NODE_NAME" --state-dir /var/lib/faultline-agent \
       --tls-ca /etc/faultline-agent/tls/ca.crt --tls-cert /etc/faultline-agent/tls/tls.crt \
       --tls-key /etc/faultline-agent/tls/tls.key

   # On a plain Linux host of a golden copy (deploy/systemd/faultline-agent.service):
   faultline agent --host-only --state-dir /var/lib/faultline-agent \
       --tls-ca /etc/faultline/agent/ca.crt --tls-cert /etc/faultline/agent/agent.crt \
       --tls-key /etc/faultline/agent/agent.key`

func (m *Main) agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "the node agent: applies network faults inside pods (or namespaces) of its own node, or network and process faults on a plain host, for runs",
		Description: `'faultline agent' runs on every node (a privileged DaemonSet with hostPID and the container
runtime's socket) or on a plain Linux host (a systemd unit). A run asks it, over HTTPS with
mutual TLS, to apply a network fault - partition, reject, loss, shardIsolation, bandwidth,
latency - inside a pod's network namespace, a named namespace ({netns: NAME}) or the host's
({host: true}); with --host-only (a plain Linux host, a systemd unit) also processKill and
processPause of the host's processes, for runbooks that name it in a fault's on:. The agent finds a pod's namespace through the runtime's CRI API (containerd,
CRI-O), or through /proc when no runtime answers; it accepts only pods whose sandbox runs on
its own node (403, rule node, for the others).

Every fault is written to the agent's ledger (--state-dir) before it is applied, and held on
a lease the run renews (every lease/3). A lease that runs out is the dead-man switch: the
agent reverts the fault by itself, logs it and counts it. Stopping the agent (SIGTERM, a
rolling update) does not revert what it holds: the next agent on the node reads the ledger,
reverts what expired meanwhile and holds the rest again. A fault whose pod was deleted is
closed as "pod gone", without an error.

TLS: the agent presents --tls-cert (which must name DNS:` + agentapi.ServerName + `) and accepts only
client certificates signed by --tls-ca; a request without one gets 401, a certificate from
another CA fails the handshake. Health: GET /healthz and /readyz on --listen (no certificate
needed). Metrics: GET /metrics on --metrics-listen (plain HTTP).
` + agentExamples,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: fmt.Sprintf(":%d", agentapi.DefaultPort), Usage: "where the HTTPS API listens"},
			&cli.StringFlag{Name: "metrics-listen", Value: ":9470", Usage: `where /metrics and /healthz are served over plain HTTP ("" turns it off)`},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"NODE_NAME"}, Usage: "this node's name (the downward API's spec.nodeName; default: the host name)"},
			&cli.StringFlag{Name: "state-dir", Value: "/var/lib/faultline-agent", Usage: "the agent's ledger lives here; a hostPath on Kubernetes, so that it outlives the pod"},
			&cli.StringSliceFlag{Name: "cri-socket", Value: cli.NewStringSlice(podnetns.DefaultEndpoints...), Usage: "container runtime sockets, tried in order (the first that exists is used)"},
			&cli.BoolFlag{Name: "no-proc-fallback", Usage: "find pods only through CRI, never by scanning /proc for the pod's cgroup"},
			&cli.BoolFlag{Name: "host-only", Usage: "a plain host: refuse pod targets, serve only {host: true} and {netns: NAME}, and accept process faults"},
			&cli.StringFlag{Name: "netns-dir", Value: "/var/run/netns", Usage: "where named network namespaces are"},
			&cli.StringFlag{Name: "tls-ca", Required: true, Usage: "PEM CA that signs the clients' (runs') certificates"},
			&cli.StringFlag{Name: "tls-cert", Required: true, Usage: "PEM certificate of the agent (with DNS:" + agentapi.ServerName + ")"},
			&cli.StringFlag{Name: "tls-key", Required: true, Usage: "PEM key of --tls-cert"},
			&cli.StringSliceFlag{Name: "tls-allow-client", Usage: "allow only client certificates with this common or DNS name (repeat; default: any the CA signed)"},
			&cli.DurationFlag{Name: "max-lease", Value: 5 * time.Minute, Usage: "longest lease a run may ask for: the longest a fault outlives its run"},
		},
		Action: m.agentRun,
	}
}

func (m *Main) agentRun(c *cli.Context) error {
	log, err := m.logger(c)
	if err != nil {
		return err
	}
	tlsConf, err := agentapi.ServerTLS(c.String("tls-ca"), c.String("tls-cert"), c.String("tls-key"))
	if err != nil {
		return exitWith(exitInvalid, fmt.Errorf("agent TLS: %w", err))
	}
	node := c.String("node-name")
	if node == "" {
		if node, err = os.Hostname(); err != nil {
			return exitWith(exitInvalid, fmt.Errorf("no --node-name and no host name: %w", err))
		}
	}
	var cri *podnetns.CRI
	var pods agent.PodResolver
	if !c.Bool("host-only") {
		var proc *podnetns.Proc
		if !c.Bool("no-proc-fallback") {
			proc = &podnetns.Proc{}
		}
		cri = &podnetns.CRI{Endpoints: c.StringSlice("cri-socket"), Proc: proc}
		pods = &podnetns.Resolver{CRI: cri, Proc: proc}
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ag, err := agent.New(ctx, agent.Config{
		NodeName: node, StateDir: agentStateDir(c), MaxLease: c.Duration("max-lease"),
		NetnsDir: c.String("netns-dir"), Pods: pods, Logger: log, Metrics: reg,
	})
	if err != nil {
		return exitWith(exitAborted, err)
	}
	// Held faults stay applied: the next agent takes them over from the ledger.
	defer ag.Close()
	if cri != nil {
		if v, err := cri.Check(ctx); err != nil {
			log.Warn("container runtime not reachable: pods are found through /proc only", "err", err)
		} else {
			log.Info("container runtime", "runtime", v)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.String("listen"))
	if err != nil {
		return exitWith(exitInvalid, fmt.Errorf("--listen: %w", err))
	}
	hs := &http.Server{
		Handler:           ag.Handler(agent.HandlerOptions{RequireCert: true, AllowedClients: c.StringSlice("tls-allow-client")}),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 3 * time.Minute,
	}
	served := make(chan error, 2)
	go func() { served <- hs.Serve(tls.NewListener(ln, tlsConf)) }()
	var ms *http.Server
	if addr := c.String("metrics-listen"); addr != "" {
		mln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			_ = hs.Close()
			return exitWith(exitInvalid, fmt.Errorf("--metrics-listen: %w", err))
		}
		ms = &http.Server{Handler: agent.MetricsHandler(reg), ReadHeaderTimeout: 10 * time.Second}
		go func() { served <- ms.Serve(mln) }()
		fmt.Fprintf(m.Stdout, "faultline agent: metrics on http://%s/metrics\n", mln.Addr())
	}
	// Stable lines on stdout, whatever the log level: operators and tests read the address.
	fmt.Fprintf(m.Stdout, "faultline agent: node %s, ledger %s, %d faults held\n", node, ag.Ledger(), ag.Held())
	fmt.Fprintf(m.Stdout, "faultline agent: listening on https://%s\n", ln.Addr())
	var serveErr error
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = exitWith(exitAborted, fmt.Errorf("agent server: %w", err))
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("agent API shutdown", "err", err)
	}
	if ms != nil {
		_ = ms.Shutdown(sctx)
	}
	log.Info("agent stopping; held faults stay applied on their leases", "held", ag.Held())
	return serveErr
}

// agentStateDir is the agent's --state-dir, or the global one (faultline --state-dir DIR agent)
// when only that was given: two flags of one name must not send the ledger somewhere the operator
// did not say.
func agentStateDir(c *cli.Context) string {
	if c.IsSet("state-dir") {
		return c.String("state-dir")
	}
	for _, p := range c.Lineage()[1:] {
		if p.IsSet("state-dir") {
			return p.String("state-dir")
		}
	}
	return c.String("state-dir")
}
