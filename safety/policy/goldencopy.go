package policy

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
)

// KubernetesGuard is the golden-copy guard: a preflight check (experiments.Preflight) that
// compares the live cluster with the runbook's environment.kubernetes before anything is listed
// or touched, and refuses the run (exit 4) on any mismatch or when the cluster cannot be
// identified. A runbook without environment.kubernetes is not checked and never contacts a
// cluster (validation already refuses Kubernetes faults without it).
func KubernetesGuard(kc *kubeclient.Client) func(ctx context.Context, rb *runbooks.Runbook) error {
	return func(ctx context.Context, rb *runbooks.Runbook) error {
		want := rb.Environment.Kubernetes
		if want == nil {
			return nil
		}
		if want.Server != "" {
			cfg, err := kc.Config()
			if err != nil {
				return Refusef("environment.kubernetes", "cannot tell which cluster this is: %v", err)
			}
			if !SameServer(cfg.Host, want.Server) {
				return Refusef("environment.kubernetes.server",
					"the client points at %s but the runbook is pinned to %s: this is not the cluster the runbook was written for", cfg.Host, want.Server)
			}
		}
		if want.ClusterID != "" {
			id, err := kc.Identity(ctx)
			if err != nil {
				return Refusef("environment.kubernetes.clusterID", "cannot verify the cluster's identity: %v", err)
			}
			if id.ClusterID != want.ClusterID {
				return Refusef("environment.kubernetes.clusterID",
					"the cluster at %s has clusterID %s but the runbook is pinned to %s: this is not the cluster the runbook was written for",
					id.Server, id.ClusterID, want.ClusterID)
			}
		}
		return nil
	}
}

// SameServer compares API server URLs the way people write them: scheme and host are
// case-insensitive, https without a port means 443 (http 80), and a trailing slash is ignored.
func SameServer(a, b string) bool {
	na, errA := normalizeServer(a)
	nb, errB := normalizeServer(b)
	if errA != nil || errB != nil {
		return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
	}
	return na == nb
}

func normalizeServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s // client-go accepts a bare host:port and means https
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parse server URL %q: %w", s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	return fmt.Sprintf("%s://%s:%s%s", scheme, host, port, strings.TrimRight(u.Path, "/")), nil
}
