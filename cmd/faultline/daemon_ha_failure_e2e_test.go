package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// haNamespace creates a namespace for one HA test's Lease, ledger and claims.
func haNamespace(t testing.TB, c *kube.Cluster) string {
	t.Helper()
	ns := fmt.Sprintf("faultline-ha-%d", time.Now().UnixNano()%1e7)
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	return ns
}

func haConfig(ns string, lease time.Duration) string {
	return fmt.Sprintf(`ledger: {backend: kubernetes, namespace: %s}
leaderElection: {namespace: %s, leaseDuration: %s, renewDeadline: 2s, retryPeriod: 500ms}
`, ns, ns, lease)
}

// leaseHolder is the identity holding the daemon's Lease ("" when none).
func leaseHolder(t testing.TB, c *kube.Cluster, ns string) string {
	t.Helper()
	l, err := c.Client.CoordinationV1().Leases(ns).Get(context.Background(), "faultline-daemon", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func (d *runningDaemon) status(t testing.TB) api.StatusResponse {
	t.Helper()
	code, b := d.call(t, "GET", "/api/v1/status", readToken, nil)
	var st api.StatusResponse
	if code != http.StatusOK || json.Unmarshal(b, &st) != nil {
		t.Fatalf("status: %d %s", code, b)
	}
	return st
}

func (d *runningDaemon) kill(t testing.TB) {
	t.Helper()
	_ = d.cmd.Process.Kill()
	<-d.done
}

// A replica restarted under its old identity (a pod's container restarted after an OOM kill)
// takes the lease back and reverts the fault its dead predecessor left applied, before it
// schedules; and the per-day cap counts the predecessor's start, so nothing starts again today.
func TestDaemonSameIdentityRestartRevertsOwnOrphans(t *testing.T) {
	c := kubeCluster.Get(t)
	ns := haNamespace(t, c)
	const lease = 3 * time.Second
	e := newDaemonEnv(t, 1, haConfig(ns, lease))
	e.setCron(t, "* * * * *")
	b, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(b), `cron: "* * * * *"}`, `cron: "* * * * *", maxRunsPerDay: 1}`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	led := &ledger.KubeLedger{Client: c.Client, Namespace: ns}
	states := map[string]string{"replica-a": t.TempDir(), "replica-b": t.TempDir()}
	daemons := map[string]*runningDaemon{}
	for id, st := range states {
		daemons[id] = startDaemonIn(t, e, st, nil, "--kubeconfig", c.Kubeconfig, "--identity", id)
	}
	waitFor(t, 75*time.Second, "the scheduled run to stop the victim", func() bool { return e.victims[0].State() == "T" })
	holder := leaseHolder(t, c, ns)
	leader := daemon.HolderIdentity(holder)
	// During the run, status does not offer the running start as the next one.
	if st := daemons[leader].status(t); len(st.Schedules) != 1 || (st.Schedules[0].NextStart != nil && !st.Schedules[0].NextStart.After(time.Now())) {
		t.Errorf("status during the scheduled run shows a stale next start: %+v", st.Schedules)
	}
	open, err := ledger.OpenEntries(context.Background(), led)
	if err != nil || len(open) != 1 || open[0].Owner.ID != leader || open[0].Owner.Incarnation == "" || holder != leader+"/"+open[0].Owner.Incarnation {
		t.Fatalf("ledger before the kill: %+v (err %v); want one entry owned by %s with the Lease's incarnation (%s)", open, err, leader, holder)
	}
	for _, d := range daemons {
		d.kill(t)
	}
	if e.victims[0].State() != "T" {
		t.Fatal("the victim should still be stopped after both replicas were killed")
	}

	restarted := time.Now()
	d := startDaemonIn(t, e, states[leader], nil, "--kubeconfig", c.Kubeconfig, "--identity", leader)
	waitFor(t, lease+30*time.Second, "the restarted replica to revert its predecessor's fault", func() bool { return e.victims[0].State() != "T" })
	took := time.Since(restarted)
	t.Logf("same-identity restart: orphan reverted %s after the restart (lease %s)", took.Round(time.Millisecond), lease)
	if strings.Contains(d.stderrText(), "still alive") {
		t.Errorf("the restarted replica took its dead predecessor for alive:\n%s", d.stderrText())
	}
	waitFor(t, 10*time.Second, "the ledger entry to be marked reverted", func() bool {
		open, err := ledger.OpenEntries(context.Background(), led)
		return err == nil && len(open) == 0
	})

	// The cap (1 a day) holds across the restart: the next start is not today.
	var st api.StatusResponse
	waitFor(t, 20*time.Second, "the restarted leader to compute its next start", func() bool {
		st = d.status(t)
		return st.Leader && len(st.Schedules) == 1 && st.Schedules[0].NextStart != nil
	})
	now := time.Now().UTC()
	first := open[0].RecordedAt.UTC()
	if first.YearDay() == now.YearDay() {
		next := st.Schedules[0].NextStart.UTC()
		if next.YearDay() == now.YearDay() || st.Schedules[0].RunsToday < 1 {
			t.Fatalf("after the restart: next start %s, %d runs today; maxRunsPerDay 1 was used by the predecessor's run at %s", next, st.Schedules[0].RunsToday, first)
		}
	} else {
		t.Logf("the day changed during the test; the cap is not checked")
	}
	_ = d.cmd.Process.Signal(interruptSignal)
	d.wait(t, 30*time.Second)
}

// Halt, the kill switch, pause and resume sent to the standby reach the leader and answer once
// done; pause lives in the cluster and holds across failover; and with both replicas dead
// mid-run, `faultline recover --ledger kubernetes` reverts from the cluster ledger.
func TestDaemonSafetyCallsThroughStandby(t *testing.T) {
	c := kubeCluster.Get(t)
	ns := haNamespace(t, c)
	const lease = 3 * time.Second
	e := newDaemonEnv(t, 1, haConfig(ns, lease))
	daemons := map[string]*runningDaemon{}
	for _, id := range []string{"replica-a", "replica-b"} {
		daemons[id] = startDaemonIn(t, e, t.TempDir(), nil, "--kubeconfig", c.Kubeconfig, "--identity", id)
	}
	var leader string
	waitFor(t, 20*time.Second, "a leader", func() bool {
		leader = daemon.HolderIdentity(leaseHolder(t, c, ns))
		return daemons[leader] != nil && daemons[leader].status(t).Leader
	})
	other := "replica-a"
	if leader == other {
		other = "replica-b"
	}
	L, S := daemons[leader], daemons[other]
	waitFor(t, 10*time.Second, "the standby's status to name the leader", func() bool { return S.status(t).LeaderIdentity == leader })
	for id, d := range daemons {
		// Replicas started together race to create the Lease; the loser must not log an error.
		if strings.Contains(d.stderrText(), "initially creating") {
			t.Errorf("%s logged client-go's Lease creation race:\n%s", id, d.stderrText())
		}
	}
	stopped := func() bool { return e.victims[0].State() == "T" }

	id := L.trigger(t, "s0")
	waitFor(t, 15*time.Second, "the victim to be stopped", stopped)
	if code, b := S.call(t, "POST", "/api/v1/runs/"+id+"/halt", adminToken, map[string]string{"reason": "via the standby"}); code != http.StatusOK {
		t.Fatalf("halt one run through the standby: %d %s", code, b)
	}
	if stopped() {
		t.Fatal("the halt through the standby answered before the fault was reverted")
	}
	if code, b := S.call(t, "POST", "/api/v1/runs/no-such-run/halt", adminToken, nil); code != http.StatusNotFound {
		t.Fatalf("halt of an unknown run through the standby: %d %s, want 404", code, b)
	}

	id = L.trigger(t, "s0")
	waitFor(t, 15*time.Second, "the victim to be stopped again", stopped)
	code, b := S.call(t, "POST", "/api/v1/halt", adminToken, map[string]string{"reason": "kill switch via the standby"})
	var hr api.HaltResponse
	if code != http.StatusOK || json.Unmarshal(b, &hr) != nil || len(hr.Halted) != 1 || hr.Halted[0] != id {
		t.Fatalf("kill switch through the standby: %d %s, want run %s halted", code, b, id)
	}
	if stopped() {
		t.Fatal("the kill switch through the standby answered before the fault was reverted")
	}

	if code, b := S.call(t, "POST", "/api/v1/pause", adminToken, nil); code != http.StatusOK || !strings.Contains(string(b), `"paused": true`) {
		t.Fatalf("pause through the standby: %d %s", code, b)
	}
	if code, b := L.call(t, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"}); code != http.StatusConflict || !strings.Contains(string(b), "paused") {
		t.Fatalf("trigger on the leader after a pause through the standby: %d %s, want 409 paused", code, b)
	}
	if !L.status(t).Paused {
		t.Fatal("the leader's status does not show the pause")
	}

	// Failover: the pause is in the cluster, so the new leader does not schedule either.
	L.kill(t)
	waitFor(t, lease+20*time.Second, "the standby to lead", func() bool { return S.status(t).Leader })
	if st := S.status(t); !st.Paused {
		t.Fatalf("the new leader forgot the pause: %+v", st)
	}
	if code, b := S.call(t, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"}); code != http.StatusConflict || !strings.Contains(string(b), "paused") {
		t.Fatalf("trigger on the new leader while paused: %d %s, want 409 paused", code, b)
	}
	if code, b := S.call(t, "POST", "/api/v1/resume", adminToken, nil); code != http.StatusOK || !strings.Contains(string(b), `"paused": false`) {
		t.Fatalf("resume: %d %s", code, b)
	}

	// Both replicas die mid-run: recover reads the cluster ledger; --dry-run says what it then does.
	S.trigger(t, "s0")
	waitFor(t, 15*time.Second, "the victim to be stopped by the new leader", stopped)
	S.kill(t)
	// Until the dead leader's Lease expires, recover must take it for alive.
	waitFor(t, lease+10*time.Second, "the dead leader's Lease to expire", func() bool {
		l, err := c.Client.CoordinationV1().Leases(ns).Get(context.Background(), "faultline-daemon", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) > lease+time.Second
	})
	state := t.TempDir()
	args := []string{"recover", "--ledger", "kubernetes", "--namespace", ns, "--kubeconfig", c.Kubeconfig}
	dry := faultline(t, state, append(args, "--dry-run")...)
	if dry.code != 0 || !strings.Contains(dry.stdout, "would revert") || !stopped() {
		t.Fatalf("recover --dry-run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	// The daemon's config names the same ledger as the flags do.
	if fromCfg := faultline(t, state, "recover", "--daemon-config", e.config, "--kubeconfig", c.Kubeconfig, "--dry-run"); fromCfg.stdout != dry.stdout {
		t.Fatalf("recover --daemon-config --dry-run: exit %d\n%s%s\nwant what --ledger kubernetes listed:\n%s", fromCfg.code, fromCfg.stdout, fromCfg.stderr, dry.stdout)
	}
	out := faultline(t, state, args...)
	if out.code != 0 || strings.Count(out.stdout, "reverted ") != strings.Count(dry.stdout, "would revert ") || stopped() {
		t.Fatalf("recover: exit %d (victim stopped: %v)\n%s%s\ndry run said:\n%s", out.code, stopped(), out.stdout, out.stderr, dry.stdout)
	}
	if again := faultline(t, state, args...); again.code != 0 || !strings.Contains(again.stdout, "nothing to recover") {
		t.Fatalf("second recover: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
}

// A replica whose orphan recovery fails (its RBAC taken away) is not ready and schedules nothing,
// says why in its status and a metric, retries with backoff, and schedules once RBAC is back.
func TestDaemonRecoveryFailureBlocksScheduling(t *testing.T) {
	c, f := kubeFixture(t, kubefix.OptIn())
	f.StatefulSet(kubefix.Spec{Name: "db", Replicas: 2})
	injRole := "faultline-ha-" + f.NS
	createRole(t, c.Client, rbacObjects(t, "clusterrole.yaml")["faultline"], injRole)
	bindCluster(t, c.Client, injRole, rbacClusterUser)
	ledgerRole := "faultline-ha-ledger-" + f.NS
	createRole(t, c.Client, daemonRole(t), ledgerRole)
	bindCluster(t, c.Client, ledgerRole, rbacClusterUser)
	tokenCS, err := kubernetes.NewForConfig(c.ConfigForToken(rbacClusterToken))
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, tokenCS, f.NS)
	kubeconfig := c.KubeconfigForToken(rbacClusterToken)

	// A leader, as the issue found it: a new leader whose recovery failed scheduled anyway.
	e := newDaemonEnv(t, 1, haConfig(f.NS, 3*time.Second))
	rb := kubeRunbook(t, kubeData{ClusterID: clusterUID(t, c), Server: c.Server, Duration: "10m",
		Faults: fmt.Sprintf(`[{shardOutage: {mode: scale-to-zero, workload: {kind: StatefulSet, name: db, namespace: %s}}}]`, f.NS)})
	cfg, _ := os.ReadFile(e.config)
	if err := os.WriteFile(e.config, fmt.Appendf(cfg, "  - {name: shard, runbook: %q, cron: \"0 3 1 1 *\"}\n", rb), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e, nil, "--kubeconfig", kubeconfig, "--identity", "replica-a")
	waitFor(t, 20*time.Second, "the replica to lead", func() bool { return d.status(t).Leader })
	d.trigger(t, "shard")
	waitFor(t, 30*time.Second, "the shard to be down", func() bool {
		n, _ := f.Replicas(f.Ctx(5*time.Second), "StatefulSet", "db")
		return n == 0
	})
	d.kill(t)

	// Take away the injectors' RBAC: the orphan cannot be reverted.
	if err := c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), injRole+"-"+rbacClusterUser, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the revocation to take effect", func() bool {
		_, err := tokenCS.AppsV1().StatefulSets(f.NS).GetScale(context.Background(), "db", metav1.GetOptions{})
		return err != nil
	})
	d = startDaemonUnready(t, e, e.state, nil, "--kubeconfig", kubeconfig, "--identity", "replica-a")
	var st api.StatusResponse
	waitFor(t, 30*time.Second, "the status to report the failing recovery", func() bool {
		st = d.status(t)
		return st.Recovery != ""
	})
	if st.Ready || !strings.Contains(st.Recovery, "forbidden") {
		t.Fatalf("status while recovery fails: %+v", st)
	}
	if code, _ := d.call(t, "GET", "/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while recovery fails: %d, want 503", code)
	}
	if _, b := d.call(t, "GET", "/metrics", "", nil); !strings.Contains(string(b), "faultline_recovery_pending 1") {
		t.Fatalf("metrics while recovery fails lack faultline_recovery_pending 1")
	}
	if code, b := d.call(t, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"}); code != http.StatusConflict || !strings.Contains(string(b), "recovery") {
		t.Fatalf("trigger while recovery fails: %d %s, want 409 naming the recovery", code, b)
	}
	if e.victims[0].State() == "T" {
		t.Fatal("a run started on top of an unreverted orphan")
	}

	bindCluster(t, c.Client, injRole, rbacClusterUser)
	waitFor(t, 90*time.Second, "the recovery to succeed once RBAC is back", func() bool {
		code, _ := d.call(t, "GET", "/readyz", "", nil)
		return code == http.StatusOK
	})
	if n := mustReplicasOf(t, f, "StatefulSet", "db"); n != 2 {
		t.Fatalf("db has %d replicas after recovery, want 2", n)
	}
	if st := d.status(t); st.Recovery != "" {
		t.Fatalf("status after recovery still says %q", st.Recovery)
	}
	d.trigger(t, "s0")
	waitFor(t, 15*time.Second, "a run to start after recovery", func() bool { return e.victims[0].State() == "T" })

	// SIGTERM mid-outage (a pod deleted): both runs reverted, and the workload recorder does not
	// warn about the cancellation that is the shutdown itself.
	shardRun := d.trigger(t, "shard")
	waitFor(t, 60*time.Second, "the shard to be down again", func() bool {
		if code, b := d.call(t, "GET", "/api/v1/runs/"+shardRun, readToken, nil); code == http.StatusOK && strings.Contains(string(b), `"state": "finished"`) {
			t.Fatalf("the second shard outage ended early: %s\n%s", b, d.stderrText())
		}
		n, _ := f.Replicas(f.Ctx(5*time.Second), "StatefulSet", "db")
		return n == 0
	})
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if out := d.wait(t, 60*time.Second); out.code != 0 {
		t.Fatalf("daemon exit %d on SIGTERM\n%s", out.code, out.stderr)
	}
	if n := mustReplicasOf(t, f, "StatefulSet", "db"); n != 2 || e.victims[0].State() == "T" {
		t.Fatalf("after SIGTERM: db at %d replicas, victim %s; want both reverted", n, e.victims[0].State())
	}
	if strings.Contains(d.stderrText(), "workload recorder:") {
		t.Errorf("the workload recorder warned on SIGTERM:\n%s", d.stderrText())
	}
}

// daemonRole is deploy/kustomize/base/role.yaml's Role as a ClusterRole (the test binds it for
// its user across namespaces).
func daemonRole(t testing.TB) *rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile("../../deploy/kustomize/base/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(b), "\n---\n")
	var r rbacv1.Role
	if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: r.Name}, Rules: r.Rules}
}

// A single daemon's pause survives its restart (it is kept in the state directory): a daemon that
// was paused before a crash or an upgrade does not start scheduling again on its own.
func TestDaemonPauseSurvivesRestart(t *testing.T) {
	e := newDaemonEnv(t, 1, "")
	d := startDaemon(t, e, nil)
	if code, b := d.call(t, "POST", "/api/v1/pause", adminToken, nil); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, b)
	}
	d.kill(t)
	d = startDaemon(t, e, nil)
	if !d.status(t).Paused {
		t.Fatal("the restarted daemon forgot the pause")
	}
	if code, b := d.call(t, "POST", "/api/v1/runs", adminToken, map[string]string{"runbook": "s0"}); code != http.StatusConflict || !strings.Contains(string(b), "paused") {
		t.Fatalf("trigger after the restart: %d %s, want 409 paused", code, b)
	}
	if code, b := d.call(t, "POST", "/api/v1/resume", adminToken, nil); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, b)
	}
	_ = d.cmd.Process.Signal(interruptSignal)
	d.wait(t, 30*time.Second)
	d = startDaemon(t, e, nil)
	if d.status(t).Paused {
		t.Fatal("the daemon is paused after a resume and a restart")
	}
	_ = d.cmd.Process.Signal(interruptSignal)
	d.wait(t, 30*time.Second)
}
