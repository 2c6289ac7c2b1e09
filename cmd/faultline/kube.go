package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/safety/policy"
)

// kubeFlags select the Kubernetes cluster. They are global (faultline --kubeconfig K run ...) and
// also accepted after the commands that use them (faultline run --kubeconfig K ...), the way
// kubectl users type them; kubeClient reads whichever was given.
func kubeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the in-cluster service account)"},
		&cli.StringFlag{Name: "context", Usage: "kubeconfig context to use (default: its current context)"},
		&cli.StringFlag{Name: "self-namespace", EnvVars: []string{"FAULTLINE_NAMESPACE"},
			Usage: "namespace faultline itself runs in, never a target (default: read from the in-cluster service account)"},
	}
}

// kubeClient builds the process's Kubernetes client from the global flags. Nothing is loaded or
// contacted until a Kubernetes fault, probe or check first asks for it.
func kubeClient(c *cli.Context) *kubeclient.Client {
	return kubeclient.New(kubeclient.Options{
		Kubeconfig:    flagValue(c, "kubeconfig"),
		Context:       flagValue(c, "context"),
		SelfNamespace: flagValue(c, "self-namespace"),
	})
}

// flagValue returns a flag given on the command or on any command above it, nearest first.
func flagValue(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name)
		}
	}
	return ""
}

// withKube gives the engine the Kubernetes client and the golden-copy guard.
func withKube(eng *experiments.Engine, kc *kubeclient.Client) {
	eng.InjectorEnv.Kube = kc
	eng.ProbeEnv.Kube = kc
	eng.Preflight = append(eng.Preflight, policy.KubernetesGuard(kc), recorder.AutoscalersPreflight(kc))
}

func (m *Main) clusterIDCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster-id",
		Usage: "print the identity of the Kubernetes cluster the client points at, for environment.kubernetes",
		Description: `Connects with the same rules as 'run' (--kubeconfig, $KUBECONFIG, --context, in-cluster)
and prints the cluster's identity: the UID of its kube-system namespace (clusterID) and the
API server URL (server), as a snippet to paste into a runbook's environment. 'run' refuses
any cluster that does not match what the runbook declares.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "yaml (a runbook snippet) or json"},
		}, kubeFlags()...),
		Action: func(c *cli.Context) error {
			id, err := kubeClient(c).Identity(c.Context)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			switch c.String("output") {
			case "json":
				b, _ := json.MarshalIndent(id, "", "  ")
				fmt.Fprintln(m.Stdout, string(b))
			case "yaml":
				fmt.Fprintf(m.Stdout, "environment:\n  kubernetes:\n    clusterID: %s\n    server: %s\n", id.ClusterID, id.Server)
			default:
				return exitWith(exitInvalid, fmt.Errorf("--output must be yaml or json, got %q", c.String("output")))
			}
			return nil
		},
	}
}
