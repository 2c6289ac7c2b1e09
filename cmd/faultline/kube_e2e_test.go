package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// Static tokens for the RBAC tests: users bound to exactly the roles in deploy/rbac/.
const (
	rbacClusterUser, rbacClusterToken = "faultline-rbac-cluster", "faultline-rbac-cluster-token"
	rbacNSUser, rbacNSToken           = "faultline-rbac-ns", "faultline-rbac-ns-token"
)

// kubeCluster is this package's control plane, started by the first test that needs it and
// stopped by TestMain.
var kubeCluster = &kube.Shared{
	Options: []kube.Option{
		kube.WithTokens(kube.Token{User: rbacClusterUser, Token: rbacClusterToken}, kube.Token{User: rbacNSUser, Token: rbacNSToken}),
		kube.WithAPIServerArgs("--feature-gates=HPAScaleToZero=true"),
	},
	Setup: func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, 2, "e2e") },
}

// kubeFixture returns the cluster and a fresh namespace in it.
func kubeFixture(t testing.TB, nsLabels map[string]string) (*kube.Cluster, *kubefix.Fixture) {
	t.Helper()
	c := kubeCluster.Get(t)
	return c, kubefix.New(t, c.Client, "e2e", nsLabels)
}

func clusterUID(t testing.TB, c *kube.Cluster) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(ns.UID)
}

type kubeData struct {
	ClusterID, Server, Policy, Duration, Faults string
}

// kubeRunbook renders a Kubernetes runbook; Faults is a YAML flow sequence of faults.
func kubeRunbook(t testing.TB, d kubeData) string {
	t.Helper()
	if d.Duration == "" {
		d.Duration = "1s"
	}
	return runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: e2e-kube}
environment:
  name: golden
  type: golden-copy
  kubernetes: {clusterID: "{{.ClusterID}}", server: "{{.Server}}"}
{{with .Policy}}policy: {{.}}
{{end}}experiments:
  - name: chaos
    duration: {{.Duration}}
    faults: {{.Faults}}
`, d)
}

func podUIDs(t testing.TB, f *kubefix.Fixture, selector string) map[string]bool {
	t.Helper()
	ps, err := f.LivePods(f.Ctx(10*time.Second), selector)
	if err != nil {
		t.Fatal(err)
	}
	return kubefix.UIDs(ps)
}

func TestKubeClusterID(t *testing.T) {
	c := kubeCluster.Get(t)
	out := faultline(t, t.TempDir(), "--kubeconfig", c.Kubeconfig, "cluster-id")
	want := fmt.Sprintf("environment:\n  kubernetes:\n    clusterID: %s\n    server: %s\n", clusterUID(t, c), c.Server)
	if out.code != 0 || out.stdout != want {
		t.Fatalf("cluster-id: exit %d\n%s\nwant:\n%s\nstderr: %s", out.code, out.stdout, want, out.stderr)
	}
	out = faultline(t, t.TempDir(), "cluster-id", "--kubeconfig", c.Kubeconfig, "-o", "json")
	var id struct{ ClusterID, Server string }
	if err := json.Unmarshal([]byte(out.stdout), &id); err != nil || id.ClusterID != clusterUID(t, c) || id.Server != c.Server {
		t.Fatalf("cluster-id -o json: %v\n%s", err, out.stdout)
	}
	// KUBECONFIG is honoured like kubectl does.
	state := t.TempDir()
	cmdOut := faultlineEnv(t, []string{"KUBECONFIG=" + c.Kubeconfig}, state, "cluster-id")
	if cmdOut.code != 0 || cmdOut.stdout != want {
		t.Fatalf("cluster-id with $KUBECONFIG: exit %d\n%s%s", cmdOut.code, cmdOut.stdout, cmdOut.stderr)
	}
}

// faultlineEnv is faultline() with extra environment variables.
func faultlineEnv(t testing.TB, env []string, stateDir string, args ...string) outcome {
	t.Helper()
	s := startFaultline(t, env, stateDir, args...)
	return s.wait(t, 2*time.Minute)
}

var podTargetRE = regexp.MustCompile(`^pod (\S+)/(\S+) \(uid ([0-9a-f-]{36})\) on node e2e-[01]$`)

// pod-kill through the binary: --dry-run lists the exact pods and touches nothing; the run kills
// two pods of a 5-replica Deployment and the real ReplicaSet controller replaces them.
func TestKubePodKill(t *testing.T) {
	c, f := kubeFixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 5, Labels: kubefix.OptIn()})
	rb := kubeRunbook(t, kubeData{ClusterID: clusterUID(t, c), Server: c.Server,
		Faults: fmt.Sprintf(`[{podKill: {workload: {kind: Deployment, name: web, namespace: %s}, mode: fixed, value: 2, gracePeriod: 0s}}]`, f.NS)})
	before := podUIDs(t, f, "app=web")
	state := t.TempDir()

	dry := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, "--dry-run", rb)
	if dry.code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	var listed []string
	for _, line := range strings.Split(dry.stdout, "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "- ")
		if m := podTargetRE.FindStringSubmatch(line); m != nil {
			if m[1] != f.NS || !before[m[3]] {
				t.Fatalf("dry run lists a pod that is not one of the Deployment's: %s", line)
			}
			listed = append(listed, m[3])
		}
	}
	if len(listed) != 2 {
		t.Fatalf("dry run lists %d pods, want 2:\n%s", len(listed), dry.stdout)
	}
	if got := podUIDs(t, f, "app=web"); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("the dry run changed the pods")
	}

	out := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, "-o", "json", rb)
	if out.code != 0 {
		t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	res := out.result(t)
	var killed []string
	for _, tgt := range res.Experiments[0].Faults[0].Targets {
		m := podTargetRE.FindStringSubmatch(tgt)
		if m == nil || !before[m[3]] {
			t.Fatalf("result target %q", tgt)
		}
		killed = append(killed, m[3])
	}
	if len(killed) != 2 {
		t.Fatalf("killed %v", killed)
	}
	f.Until(f.Ctx(time.Minute), "the ReplicaSet to replace the killed pods", func(ctx context.Context) (string, bool, error) {
		now := podUIDs(t, f, "app=web")
		n, err := f.ReadyCount(ctx, "app=web")
		return fmt.Sprintf("%d pods, %d ready", len(now), n), err == nil && n == 5 && len(now) == 5 && !now[killed[0]] && !now[killed[1]], err
	})
	if n := len(openEntries(t, state)); n != 0 {
		t.Fatalf("%d ledger entries left open", n)
	}
}

// Every refusal exits 4, names its rule, and touches nothing.
func TestKubeRefusalsExit4AndTouchNothing(t *testing.T) {
	c, f := kubeFixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 4, Labels: kubefix.OptIn()})
	f.Deployment(kubefix.Spec{Name: "plain", Replicas: 2})
	uid := clusterUID(t, c)
	kill := func(sel, mode string, value int) string {
		return fmt.Sprintf(`[{podKill: {namespaces: [%s], labelSelector: "%s", mode: %s, value: %d, gracePeriod: 0s}}]`, f.NS, sel, mode, value)
	}
	two := kill("app=web", "fixed", 2)
	cases := []struct {
		name  string
		d     kubeData
		flags []string
		want  string
	}{
		{"wrong cluster UID", kubeData{ClusterID: "3f1c9a64-0000-4000-8000-000000000000", Server: c.Server, Faults: two},
			nil, "refused by environment.kubernetes.clusterID: the cluster at " + c.Server + " has clusterID " + uid},
		{"wrong server", kubeData{ClusterID: uid, Server: "https://prod-api.example.com:6443", Faults: two},
			nil, "refused by environment.kubernetes.server: the client points at " + c.Server},
		{"denied namespace", kubeData{ClusterID: uid, Server: c.Server, Policy: "{requireOptIn: false}",
			Faults: `[{podKill: {namespaces: [kube-system], mode: all}}]`}, nil, "refused by namespace deny-list: namespace kube-system"},
		{"faultline's own namespace", kubeData{ClusterID: uid, Server: c.Server, Faults: two},
			[]string{"--self-namespace", f.NS}, "refused by namespace deny-list: namespace " + f.NS + " is faultline's own namespace"},
		{"no opt-in label", kubeData{ClusterID: uid, Server: c.Server, Faults: kill("app=plain", "one", 0)},
			nil, "refused by policy.requireOptIn: deployment " + f.NS + "/plain did not opt in"},
		{"maxPods", kubeData{ClusterID: uid, Server: c.Server, Policy: "{maxPods: 1}", Faults: two},
			nil, "refused by policy.maxPods: the fault would take down 2 pods, the limit is 1"},
		{"maxTargets", kubeData{ClusterID: uid, Server: c.Server, Policy: "{maxTargets: 1}", Faults: two},
			nil, "refused by policy.maxTargets: the fault would touch 2 targets, the limit is 1"},
		{"maxPercent", kubeData{ClusterID: uid, Server: c.Server, Policy: "{maxPercent: 25}", Faults: two},
			nil, "refused by policy.maxPercent: the fault would take 2 of the 4 replicas of deployment " + f.NS + "/web (50%), the limit is 25%"},
		{"maxWorkloads", kubeData{ClusterID: uid, Server: c.Server, Policy: "{maxWorkloads: 1, requireOptIn: false}", Faults: kill("", "all", 0)},
			nil, "refused by policy.maxWorkloads: the fault would touch 2 workloads"},
		{"scale-to-zero is 100% of a workload", kubeData{ClusterID: uid, Server: c.Server, Policy: "{maxPercent: 50}",
			Faults: fmt.Sprintf(`[{shardOutage: {mode: scale-to-zero, workload: {kind: Deployment, name: web, namespace: %s}}}]`, f.NS)},
			nil, "refused by policy.maxPercent: the fault would take 4 of the 4 replicas"},
		{"no environment.kubernetes", kubeData{Faults: two}, nil, "this runbook has Kubernetes faults but no environment.kubernetes"},
	}
	before := podUIDs(t, f, "")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			rb := kubeRunbook(t, tc.d)
			if tc.d.ClusterID == "" && tc.d.Server == "" {
				// Render the runbook without the kubernetes block at all.
				b, err := os.ReadFile(rb)
				if err != nil {
					t.Fatal(err)
				}
				b = regexp.MustCompile(`(?m)^  kubernetes: .*\n`).ReplaceAll(b, nil)
				if err := os.WriteFile(rb, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := faultline(t, state, append(append([]string{"run", "--kubeconfig", c.Kubeconfig}, tc.flags...), rb)...)
			if out.code != 4 {
				t.Fatalf("exit %d, want 4\nstdout:\n%s\nstderr:\n%s", out.code, out.stdout, out.stderr)
			}
			if !strings.Contains(out.stdout+out.stderr, tc.want) {
				t.Fatalf("output does not say %q\nstdout:\n%s\nstderr:\n%s", tc.want, out.stdout, out.stderr)
			}
			if got := podUIDs(t, f, ""); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("pods changed after a refusal")
			}
			for _, d := range []string{"web", "plain"} {
				if n, err := f.Replicas(f.Ctx(5*time.Second), "Deployment", d); err != nil || n != map[string]int32{"web": 4, "plain": 2}[d] {
					t.Fatalf("deployment %s replicas = %d (%v) after a refusal", d, n, err)
				}
			}
			if _, err := os.Stat(filepath.Join(state, "ledger.db")); err == nil {
				if n := len(openEntries(t, state)); n != 0 {
					t.Fatalf("%d ledger entries after a refusal", n)
				}
			}
		})
	}
}

// faultline run is SIGKILLed with a StatefulSet shard and a Deployment shard scaled to zero (the
// first with an HPA at minReplicas 2, the second with one at 0, raised to 1 for the window);
// faultline recover restores the replicas and both HPAs exactly, from the ledger alone.
func TestKubeScaleToZeroSIGKILLThenRecover(t *testing.T) {
	for _, point := range []string{"after-record", "observe"} {
		t.Run(point, func(t *testing.T) {
			c, f := kubeFixture(t, kubefix.OptIn())
			f.StatefulSet(kubefix.Spec{Name: "db-2", Replicas: 3, PodLabels: map[string]string{"shard": "2"}})
			f.HPA("StatefulSet", "db-2", kubefix.Ptr(int32(2)), 6)
			f.Deployment(kubefix.Spec{Name: "cache-2", Replicas: 2, PodLabels: map[string]string{"shard": "2"}})
			f.HPA("Deployment", "cache-2", kubefix.Ptr(int32(0)), 4)
			rb := kubeRunbook(t, kubeData{ClusterID: clusterUID(t, c), Server: c.Server, Duration: "10m",
				Faults: fmt.Sprintf(`[{name: shard-2, shardOutage: {mode: scale-to-zero, namespaces: [%s], labelSelector: "shard=2"}}]`, f.NS)})
			state := t.TempDir()
			var env []string
			if point != "observe" {
				env = append(env, "FAULTLINE_TEST_HOLD_AT="+point)
			}
			run := startFaultline(t, env, state, "run", "--kubeconfig", c.Kubeconfig, rb)
			if point == "observe" {
				run.waitFor(t, 30*time.Second, "the shard to be down and the ledger to say applied", func() bool {
					open := openEntries(t, state)
					db, _ := f.Replicas(f.Ctx(5*time.Second), "StatefulSet", "db-2")
					cache, _ := f.Replicas(f.Ctx(5*time.Second), "Deployment", "cache-2")
					return len(open) == 1 && open[0].State == ledger.StateApplied && db == 0 && cache == 0
				})
				if m := mustMin(t, f, "cache-2"); m != "1" {
					t.Fatalf("hpa cache-2 minReplicas during the window = %s, want 1", m)
				}
			} else {
				run.waitFor(t, 30*time.Second, "faultline to reach "+point, func() bool {
					_, err := os.Stat(filepath.Join(state, "held-"+point))
					return err == nil
				})
			}
			if err := run.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-run.done
			open := openEntries(t, state)
			if len(open) != 1 || open[0].Kind != "shard-outage" {
				t.Fatalf("ledger after the crash: %+v", open)
			}
			if point == "observe" {
				// A second run on the shard is refused while it is down.
				again := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, rb)
				if again.code != 4 || !strings.Contains(again.stdout+again.stderr, "faultline recover") {
					t.Fatalf("second run: exit %d, want 4 telling to run recover\n%s%s", again.code, again.stdout, again.stderr)
				}
			}

			out := faultline(t, state, "recover", "--kubeconfig", c.Kubeconfig)
			if out.code != 0 || !strings.Contains(out.stdout, "reverted ") {
				t.Fatalf("recover: exit %d\n%s%s", out.code, out.stdout, out.stderr)
			}
			if db := mustReplicasOf(t, f, "StatefulSet", "db-2"); db != 3 {
				t.Fatalf("statefulset db-2 replicas after recover = %d, want 3", db)
			}
			if cache := mustReplicasOf(t, f, "Deployment", "cache-2"); cache != 2 {
				t.Fatalf("deployment cache-2 replicas after recover = %d, want 2", cache)
			}
			if m := mustMin(t, f, "db-2"); m != "2" {
				t.Fatalf("hpa db-2 minReplicas after recover = %s, want 2", m)
			}
			if m := mustMin(t, f, "cache-2"); m != "0" {
				t.Fatalf("hpa cache-2 minReplicas after recover = %s, want 0", m)
			}
			f.WaitReadyPods(f.Ctx(time.Minute), "shard=2", 5)
			if out := faultline(t, state, "recover", "--kubeconfig", c.Kubeconfig); out.code != 0 || !strings.Contains(out.stdout, "nothing to recover") {
				t.Fatalf("second recover: exit %d\n%s%s", out.code, out.stdout, out.stderr)
			}
		})
	}
}

func mustReplicasOf(t testing.TB, f *kubefix.Fixture, kind, name string) int32 {
	t.Helper()
	n, err := f.Replicas(f.Ctx(10*time.Second), kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustMin(t testing.TB, f *kubefix.Fixture, name string) string {
	t.Helper()
	m, err := f.HPAMin(f.Ctx(10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		return "unset"
	}
	return fmt.Sprint(*m)
}

// rbacObjects reads the ClusterRoles of a deploy/rbac file.
func rbacObjects(t testing.TB, file string) map[string]*rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*rbacv1.ClusterRole{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if head.Kind != "ClusterRole" {
			continue
		}
		var r rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out[r.Name] = &r
	}
	return out
}

// createRole installs a ClusterRole from deploy/rbac under a test-unique name.
func createRole(t testing.TB, cs kubernetes.Interface, r *rbacv1.ClusterRole, name string) {
	t.Helper()
	r = r.DeepCopy()
	r.Name = name
	ctx := context.Background()
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

func bindCluster(t testing.TB, cs kubernetes.Interface, role, user string) {
	t.Helper()
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-" + user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(context.Background(), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{})
	})
}

// waitAllowed waits until RBAC lets the user do what the role grants (bindings reach the
// authorizer's cache asynchronously).
func waitAllowed(t testing.TB, cs kubernetes.Interface, ns string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the role binding to take effect", func() bool {
		_, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{Limit: 1})
		return err == nil
	})
}

// faultline with a token bound to exactly deploy/rbac/clusterrole.yaml's role kills pods, takes a
// shard down and restores it, and identifies the cluster; what the role does not grant — deleting
// a namespace or a workload, editing a workload, creating pods — the API server forbids.
func TestKubeRBACClusterRole(t *testing.T) {
	c, f := kubeFixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3})
	f.StatefulSet(kubefix.Spec{Name: "db", Replicas: 2})
	f.HPA("StatefulSet", "db", kubefix.Ptr(int32(2)), 4)
	role := "faultline-e2e-" + f.NS
	createRole(t, c.Client, rbacObjects(t, "clusterrole.yaml")["faultline"], role)
	bindCluster(t, c.Client, role, rbacClusterUser)
	tokenCS, err := kubernetes.NewForConfig(c.ConfigForToken(rbacClusterToken))
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, tokenCS, f.NS)
	kubeconfig := c.KubeconfigForToken(rbacClusterToken)
	uid := clusterUID(t, c)
	state := t.TempDir()

	if out := faultline(t, state, "cluster-id", "--kubeconfig", kubeconfig); out.code != 0 || !strings.Contains(out.stdout, uid) {
		t.Fatalf("cluster-id with the role: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	before := podUIDs(t, f, "app=web")
	rb := kubeRunbook(t, kubeData{ClusterID: uid, Server: c.Server,
		Faults: fmt.Sprintf(`[{podKill: {namespaces: [%s], labelSelector: app=web, mode: fixed, value: 2, gracePeriod: 0s}}]`, f.NS)})
	if out := faultline(t, state, "run", "--kubeconfig", kubeconfig, rb); out.code != 0 {
		t.Fatalf("pod-kill with the role: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	after := podUIDs(t, f, "app=web")
	gone := 0
	for u := range before {
		if !after[u] {
			gone++
		}
	}
	if gone != 2 {
		t.Fatalf("%d of the pods were killed, want 2", gone)
	}

	// scale-to-zero, held mid-window then recovered, all with the role.
	rb = kubeRunbook(t, kubeData{ClusterID: uid, Server: c.Server, Duration: "10m",
		Faults: fmt.Sprintf(`[{shardOutage: {mode: scale-to-zero, workload: {kind: StatefulSet, name: db, namespace: %s}}}]`, f.NS)})
	run := startFaultline(t, nil, state, "run", "--kubeconfig", kubeconfig, rb)
	run.waitFor(t, 30*time.Second, "the statefulset to be at 0", func() bool {
		n, _ := f.Replicas(f.Ctx(5*time.Second), "StatefulSet", "db")
		open := openEntries(t, state)
		return n == 0 && len(open) == 1 && open[0].State == ledger.StateApplied
	})
	_ = run.cmd.Process.Kill()
	<-run.done
	if out := faultline(t, state, "recover", "--kubeconfig", kubeconfig); out.code != 0 {
		t.Fatalf("recover with the role: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	if n := mustReplicasOf(t, f, "StatefulSet", "db"); n != 2 {
		t.Fatalf("statefulset db replicas after recover = %d", n)
	}

	// What the role does not grant.
	ctx := f.Ctx(30 * time.Second)
	forbidden := map[string]error{
		"delete namespace":  tokenCS.CoreV1().Namespaces().Delete(ctx, f.NS, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}),
		"delete deployment": tokenCS.AppsV1().Deployments(f.NS).Delete(ctx, "web", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}),
	}
	_, err = tokenCS.AppsV1().Deployments(f.NS).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"paused":true}}`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
	forbidden["patch deployment"] = err
	_, err = tokenCS.CoreV1().Pods(f.NS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	forbidden["create pod"] = err
	_, err = tokenCS.CoreV1().Secrets(f.NS).List(ctx, metav1.ListOptions{})
	forbidden["list secrets"] = err
	_, err = tokenCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	forbidden["list nodes"] = err
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s with faultline's role: got %v, want Forbidden", what, err)
		}
	}
}

// With the namespaced variant faultline acts only where faultline-targets is bound; elsewhere the
// run is refused (exit 4) before anything is touched.
func TestKubeRBACNamespaced(t *testing.T) {
	c, f := kubeFixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 2})
	other := kubefix.New(t, c.Client, "e2e-other", kubefix.OptIn())
	other.Deployment(kubefix.Spec{Name: "web", Replicas: 2})
	roles := rbacObjects(t, "namespaced.yaml")
	identity, targets := "faultline-identity-"+f.NS, "faultline-targets-"+f.NS
	createRole(t, c.Client, roles["faultline-identity"], identity)
	createRole(t, c.Client, roles["faultline-targets"], targets)
	bindCluster(t, c.Client, identity, rbacNSUser)
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "faultline-targets", Namespace: f.NS},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: targets},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: rbacNSUser}},
	}
	if _, err := c.Client.RbacV1().RoleBindings(f.NS).Create(context.Background(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tokenCS, err := kubernetes.NewForConfig(c.ConfigForToken(rbacNSToken))
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, tokenCS, f.NS)
	kubeconfig := c.KubeconfigForToken(rbacNSToken)
	uid := clusterUID(t, c)
	state := t.TempDir()
	kill := func(ns string) string {
		return kubeRunbook(t, kubeData{ClusterID: uid, Server: c.Server,
			Faults: fmt.Sprintf(`[{podKill: {namespaces: [%s], labelSelector: app=web, gracePeriod: 0s}}]`, ns)})
	}
	if out := faultline(t, state, "run", "--kubeconfig", kubeconfig, kill(f.NS)); out.code != 0 {
		t.Fatalf("pod-kill in the bound namespace: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	before := podUIDs(t, other, "")
	out := faultline(t, state, "run", "--kubeconfig", kubeconfig, kill(other.NS))
	if out.code != 4 || !strings.Contains(out.stdout+out.stderr, "refused by kubernetes RBAC") {
		t.Fatalf("pod-kill outside the bound namespace: exit %d, want 4 refused by kubernetes RBAC\n%s%s", out.code, out.stdout, out.stderr)
	}
	if got := podUIDs(t, other, ""); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("pods changed outside the bound namespace")
	}
}
