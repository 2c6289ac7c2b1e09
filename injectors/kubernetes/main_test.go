package kubernetes_test

import (
	"context"
	"os"
	"testing"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
)

// One control plane for the package, started by the first test that needs it. HPAScaleToZero lets
// a test create an HPA with minReplicas 0, the one case scale-to-zero has to change an HPA for.
var cluster = &kube.Shared{
	Options: []kube.Option{
		kube.WithAPIServerArgs("--feature-gates=HPAScaleToZero=true"),
	},
	Setup: func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, 2, "chaos") },
}

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// fixture returns a fresh namespace (opted in unless nsLabels says otherwise) in the shared cluster.
func fixture(t *testing.T, nsLabels map[string]string) (*kube.Cluster, *kubefix.Fixture) {
	t.Helper()
	c := cluster.Get(t)
	return c, kubefix.New(t, c.Client, "inj", nsLabels)
}

// env is the injector environment a run would give, with the policy p.
func env(t testing.TB, c *kube.Cluster, p runbooks.Policy) injectors.Env {
	t.Helper()
	kc, err := kubeclient.FromConfig(c.Config, "faultline")
	if err != nil {
		t.Fatal(err)
	}
	return injectors.Env{RunID: "test", Policy: p, Kube: kc}
}
