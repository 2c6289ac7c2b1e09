package agent_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/runbooks"
)

// A partition of a named namespace cuts a real TCP client off from a server in it; DELETE
// restores the connection and leaves the namespace's rules exactly as they were.
func TestPartitionOfANamedNamespaceAndRevert(t *testing.T) {
	require(t)
	h := startAgent(t)
	l := netns.NewPair(t)
	server := echoServer(t, l.A, l.A4.String())
	if !reach(t, l.B, server) {
		t.Fatal("no connection before the fault")
	}
	before := baseline(t, l.A)
	ctx := ctxFor(t, time.Minute)
	req := partition(t, agentapi.Target{Netns: l.A.Name}, 30*time.Second)
	f, err := h.client.Apply(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if f.State != agentapi.StateApplied || f.Netns.ID == "" || f.ExpiresAt.IsZero() || len(f.Describe) == 0 {
		t.Fatalf("applied fault = %+v", f)
	}
	if !strings.Contains(snapshot(t, l.A), "FAULTLINE-") {
		t.Fatal("no FAULTLINE chain in the target namespace")
	}
	if reach(t, l.B, server) {
		t.Fatal("the server is still reachable through the partition")
	}
	// The same id again is the same fault, not a second one.
	again, err := h.client.Apply(ctx, req)
	if err != nil || again.ID != f.ID || !again.AppliedAt.Equal(f.AppliedAt) {
		t.Fatalf("second apply of the same id = %+v, %v", again, err)
	}
	if got := h.metric(t, "faultline_agent_faults_held"); got != 1 {
		t.Errorf("faults_held = %v, want 1", got)
	}
	r, err := h.client.Revert(ctx, f.ID)
	if err != nil || r.State != agentapi.StateReverted || r.RevertReason != agentapi.ReasonRequested {
		t.Fatalf("revert = %+v, %v", r, err)
	}
	eventually(t, 10*time.Second, "the server reachable again", func() bool { return reach(t, l.B, server) })
	if after := snapshot(t, l.A); after != before {
		t.Errorf("rules differ after revert:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := h.client.Revert(ctx, f.ID); err != nil {
		t.Errorf("second revert: %v", err)
	}
	if _, err := h.client.Revert(ctx, "never-applied"); !errors.Is(err, agentapi.ErrNotFound) {
		t.Errorf("revert of an unknown id: %v, want ErrNotFound", err)
	}
}

// Without a client certificate, with one from another CA, or with a name not allowed, nothing is
// applied.
func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	require(t)
	h := startAgent(t, func(_ *agent.Config, o *agent.HandlerOptions) { o.AllowedClients = []string{"run"} })
	ns := netns.New(t)
	before := baseline(t, ns)
	ctx := ctxFor(t, time.Minute)
	req := partition(t, agentapi.Target{Netns: ns.Name}, 30*time.Second)

	conf, err := agentapi.ClientTLS(h.ca.CertPEM, h.ca.Client("spare").Cert, h.ca.Client("spare").Key)
	if err != nil {
		t.Fatal(err)
	}
	conf.Certificates = nil
	if _, err := agentapi.NewClient(h.url, conf).Apply(ctx, req); apiStatus(err) != http.StatusUnauthorized {
		t.Errorf("no client certificate: %v, want 401", err)
	}
	other := pki.NewCA(t, "other")
	foreign := other.Client("run")
	// Go's client offers only a certificate of a CA the server names: it offers none (401).
	if _, err := h.clientWith(t, other, foreign).Apply(ctx, req); apiStatus(err) != http.StatusUnauthorized {
		t.Errorf("certificate of another CA, not offered: %v, want 401", err)
	}
	// A client that presents it anyway fails the handshake.
	forced, err := agentapi.ClientTLS(h.ca.CertPEM, foreign.Cert, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert := forced.Certificates[0]
	forced.Certificates = nil
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	if _, err := agentapi.NewClient(h.url, forced).Apply(ctx, req); err == nil || apiStatus(err) != 0 {
		t.Errorf("certificate of another CA, presented: %v, want a refused handshake", err)
	}
	if _, err := h.clientWith(t, h.ca, h.ca.Client("intruder")).Apply(ctx, req); apiStatus(err) != http.StatusForbidden {
		t.Errorf("certificate with a name not allowed: %v, want 403", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Errorf("rules changed by refused calls:\n%s", after)
	}
	if n := len(h.agent.List()); n != 0 {
		t.Errorf("agent lists %d faults after refused calls", n)
	}
	// Health needs no certificate.
	resp, err := agentapi.NewClient(h.url, conf).List(ctx)
	if apiStatus(err) != http.StatusUnauthorized {
		t.Errorf("list without certificate: %v %v", resp, err)
	}
}

// Bad requests are refused with 400 (or 404 for a namespace that does not exist) and apply nothing.
func TestBadRequestsApplyNothing(t *testing.T) {
	require(t)
	h := startAgent(t)
	ns := netns.New(t)
	before := baseline(t, ns)
	ctx := ctxFor(t, time.Minute)
	mk := func(mut func(*agentapi.FaultRequest)) agentapi.FaultRequest {
		r := partition(t, agentapi.Target{Netns: ns.Name}, 10*time.Second)
		mut(&r)
		return r
	}
	for name, c := range map[string]struct {
		req    agentapi.FaultRequest
		status int
	}{
		"netnsPath set":  {mk(func(r *agentapi.FaultRequest) { r.Fault.Partition.NetnsPath = "/proc/1/ns/net" }), 400},
		"not a network":  {mk(func(r *agentapi.FaultRequest) { r.Fault = runbooks.Fault{ProcessPause: &runbooks.ProcessPause{}} }), 400},
		"lease too long": {mk(func(r *agentapi.FaultRequest) { r.Lease = runbooks.Duration(time.Hour) }), 400},
		"no lease":       {mk(func(r *agentapi.FaultRequest) { r.Lease = 0 }), 400},
		"two targets":    {mk(func(r *agentapi.FaultRequest) { r.Target.Host = true }), 400},
		"bad peer":       {mk(func(r *agentapi.FaultRequest) { r.Fault.Partition.Peers = []string{"10.0.0.300"} }), 400},
		"pod on a host": {mk(func(r *agentapi.FaultRequest) {
			r.Target = agentapi.Target{Pod: &agentapi.PodRef{Namespace: "a", Name: "b"}}
		}), 400},
		"no such netns": {mk(func(r *agentapi.FaultRequest) { r.Target.Netns = "fl-test-does-not-exist" }), 404},
		"bad id":        {mk(func(r *agentapi.FaultRequest) { r.ID = "a b" }), 400},
	} {
		_, err := h.client.Apply(ctx, c.req)
		if apiStatus(err) != c.status {
			t.Errorf("%s: %v, want HTTP %d", name, err, c.status)
		}
	}
	if after := snapshot(t, ns); after != before {
		t.Errorf("rules changed by refused requests:\n%s", after)
	}
	if n := len(h.agent.List()); n != 0 {
		t.Errorf("agent lists %d faults after refused requests", n)
	}
}

// A fault not renewed within its lease is reverted by the agent; a late renewal learns it (410).
// One renewed in time stays.
func TestLeaseExpiryRevertsAndRenewalHolds(t *testing.T) {
	require(t)
	h := startAgent(t)
	l := netns.NewPair(t)
	server := echoServer(t, l.A, l.A4.String())
	before := baseline(t, l.A)
	ctx := ctxFor(t, time.Minute)

	kept, err := h.client.Apply(ctx, partition(t, agentapi.Target{Netns: l.B.Name}, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := h.client.Apply(ctx, partition(t, agentapi.Target{Netns: l.A.Name}, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Renew one every lease/3 until the other has expired.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		if f, ok := find(h.agent.List(), dropped.ID); ok && f.State == agentapi.StateReverted {
			if f.RevertReason != agentapi.ReasonLeaseExpired || f.RevertedAt.Before(f.ExpiresAt) {
				t.Fatalf("expired fault = %+v", f)
			}
			break
		}
		select {
		case <-tick.C:
			if _, err := h.client.Renew(ctx, kept.ID, time.Second); err != nil {
				t.Fatalf("renew: %v", err)
			}
		case <-deadline:
			t.Fatal("the unrenewed fault was not reverted within 20s")
		}
	}
	if after := snapshot(t, l.A); after != before {
		t.Errorf("rules left after the lease expired:\n%s", after)
	}
	f, err := h.client.Renew(ctx, dropped.ID, time.Second)
	if !errors.Is(err, agentapi.ErrGone) || f.State != agentapi.StateReverted || f.RevertReason != agentapi.ReasonLeaseExpired {
		t.Errorf("late renewal = %+v, %v; want ErrGone with the reverted fault", f, err)
	}
	if k, ok := find(h.agent.List(), kept.ID); !ok || k.State != agentapi.StateApplied {
		t.Errorf("renewed fault = %+v", k)
	}
	if got := h.metric(t, "faultline_agent_lease_expiries_total"); got != 1 {
		t.Errorf("lease_expiries_total = %v, want 1", got)
	}
	_ = server
	if _, err := h.client.Revert(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
}

// A namespace deleted while faulted (a pod deleted) closes the fault as "pod gone", without an
// error, at the next renewal or at its lease's end.
func TestNamespaceDeletedMidFault(t *testing.T) {
	require(t)
	h := startAgent(t)
	ctx := ctxFor(t, time.Minute)
	gone := func() string {
		name := newID(t, netns.Prefix+"gone")
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() }) // already gone when the test passes
		return name
	}
	a, b := gone(), gone()
	fa, err := h.client.Apply(ctx, partition(t, agentapi.Target{Netns: a}, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fb, err := h.client.Apply(ctx, partition(t, agentapi.Target{Netns: b}, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{a, b} {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v: %s", err, out)
		}
	}
	f, err := h.client.Renew(ctx, fa.ID, 30*time.Second)
	if !errors.Is(err, agentapi.ErrGone) || f.RevertReason != agentapi.ReasonPodGone {
		t.Errorf("renewal after the namespace went = %+v, %v", f, err)
	}
	eventually(t, 20*time.Second, "the other fault closed at its lease's end", func() bool {
		f, ok := find(h.agent.List(), fb.ID)
		return ok && f.State == agentapi.StateReverted
	})
	if f, _ := find(h.agent.List(), fb.ID); f.RevertReason != agentapi.ReasonPodGone || f.RevertError != "" {
		t.Errorf("fault of a deleted namespace = %+v", f)
	}
	if got := h.metric(t, "faultline_agent_errors_total"); got != 0 {
		t.Errorf("errors_total = %v, want 0", got)
	}
}
