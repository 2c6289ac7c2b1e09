package recorder_test

import (
	"context"
	"os"
	"testing"

	"github.com/faultline-dev/faultline/internal/testenv/kube"
)

// One control plane for the package, with two kwok nodes (rec-0, rec-1), started by the first
// test that needs it; each test works in namespaces of its own.
var cluster = &kube.Shared{
	Setup: func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, 2, "rec") },
}

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}
