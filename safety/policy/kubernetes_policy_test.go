package policy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

func TestSameServer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://api.example.com:6443", "https://api.example.com:6443/", true},
		{"https://API.example.com:6443", "https://api.example.com:6443", true},
		{"https://api.example.com", "https://api.example.com:443", true},
		{"api.example.com:6443", "https://api.example.com:6443", true},
		{"https://api.example.com:6443", "https://api.example.com:6444", false},
		{"https://golden.example.com:6443", "https://prod.example.com:6443", false},
		{"http://api.example.com:6443", "https://api.example.com:6443", false},
		{"https://[::1]:6443", "https://[::1]:6443/", true},
	} {
		if got := policy.SameServer(tc.a, tc.b); got != tc.same {
			t.Errorf("SameServer(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func rule(t *testing.T, err error) string {
	t.Helper()
	var r *policy.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "refused by "+r.Rule+": ") {
		t.Fatalf("message does not name the rule: %v", err)
	}
	return r.Rule
}

// The server check needs no request; a runbook that pins no cluster never builds a client. The
// clusterID check against a live cluster is exercised end to end in cmd/faultline.
func TestKubernetesGuardWithoutACluster(t *testing.T) {
	rb := &runbooks.Runbook{}
	if err := policy.KubernetesGuard(nil)(context.Background(), rb); err != nil {
		t.Fatalf("runbook without environment.kubernetes: %v", err)
	}
	kc, err := kubeclient.FromConfig(&rest.Config{Host: "https://golden.example.com:6443"}, "")
	if err != nil {
		t.Fatal(err)
	}
	rb.Environment.Kubernetes = &runbooks.KubernetesEnvironment{Server: "https://golden.example.com:6443/"}
	if err := policy.KubernetesGuard(kc)(context.Background(), rb); err != nil {
		t.Fatalf("matching server: %v", err)
	}
	rb.Environment.Kubernetes.Server = "https://prod.example.com:6443"
	if r := rule(t, policy.KubernetesGuard(kc)(context.Background(), rb)); r != "environment.kubernetes.server" {
		t.Fatalf("rule %s", r)
	}
	// No client configuration at all: refused, not guessed.
	if r := rule(t, policy.KubernetesGuard(nil)(context.Background(), rb)); r != "environment.kubernetes" {
		t.Fatalf("rule %s", r)
	}
}

func TestKubePolicy(t *testing.T) {
	no := false
	p := policy.KubePolicyFor(runbooks.Policy{}, "chaos-system")
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease", "chaos-system"} {
		if r := rule(t, p.CheckNamespace(ns)); r != "namespace deny-list" {
			t.Fatalf("%s: rule %s", ns, r)
		}
	}
	if err := p.CheckNamespace("shop"); err != nil {
		t.Fatal(err)
	}
	if p.OptedIn(map[string]string{"app": "x"}, nil) {
		t.Fatal("opted in without the label")
	}
	if !p.OptedIn(nil, map[string]string{runbooks.OptInLabel: "enabled"}) {
		t.Fatal("label on the second set not honoured")
	}
	if p.OptedIn(map[string]string{runbooks.OptInLabel: "true"}) {
		t.Fatal("only the value enabled opts in")
	}
	if !policy.KubePolicyFor(runbooks.Policy{RequireOptIn: &no}, "").OptedIn() {
		t.Fatal("requireOptIn: false")
	}

	fp := policy.KubeFootprint{Targets: 3, Pods: 3, Workloads: []policy.WorkloadShare{
		{Name: "deployment shop/web", Replicas: 10, Affected: 2}, {Name: "statefulset shop/db", Replicas: 4, Affected: 1}}}
	for _, tc := range []struct {
		p    runbooks.Policy
		rule string
	}{
		{runbooks.Policy{}, ""},
		{runbooks.Policy{MaxTargets: 2}, "policy.maxTargets"},
		{runbooks.Policy{MaxPods: 2}, "policy.maxPods"},
		{runbooks.Policy{MaxPods: 3}, ""},
		{runbooks.Policy{MaxWorkloads: 1}, "policy.maxWorkloads"},
		{runbooks.Policy{MaxPercent: 20}, "policy.maxPercent"}, // db: 1 of 4 = 25%
		{runbooks.Policy{MaxPercent: 25}, ""},
	} {
		err := policy.KubePolicyFor(tc.p, "").CheckBlastRadius(fp)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.p, err)
			}
			continue
		}
		if r := rule(t, err); r != tc.rule {
			t.Errorf("%+v: rule %s, want %s", tc.p, r, tc.rule)
		}
	}
}
