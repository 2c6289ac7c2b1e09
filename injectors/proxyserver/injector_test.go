//go:build linux

package proxyserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

func toxicsFault(server, proxy string, lease time.Duration) runbooks.Fault {
	return runbooks.Fault{Name: "slow-db", ProxyToxics: &runbooks.ProxyToxics{
		Server: server, Proxy: proxy, Lease: runbooks.Duration(lease),
		Toxics: []runbooks.ProxyToxic{latencyToxic("latency-0", 40*time.Millisecond, "upstream")},
	}}
}

func noRecord(context.Context, json.RawMessage) error { return nil }

func TestInjectorAppliesRenewsAndReverts(t *testing.T) {
	f := newFixture(t, nil, "db")
	env := injectors.Env{RunID: "run-1"}
	ctx := ctxT(t)
	act, err := NewInjector().Prepare(ctx, toxicsFault(f.api.URL, "db", time.Second), env)
	if err != nil {
		t.Fatal(err)
	}
	if tg := act.Targets(); len(tg) != 1 || !strings.Contains(tg[0], "proxy db (127.0.0.1:") {
		t.Errorf("targets %q", tg)
	}
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctx, noRecord); err != nil {
		t.Fatal(err)
	}
	if d := act.(injectors.Describer).Describe(); len(d) != 2 || !strings.Contains(d[1], "latency 40ms") {
		t.Errorf("describe %q", d)
	}
	// Sustain for three leases: the toxics must outlive the lease because it is renewed.
	window, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var events []injectors.Event
	if err := act.(injectors.Sustainer).Sustain(window, noRecord, func(e injectors.Event) { events = append(events, e) }); err != nil {
		t.Fatalf("sustain: %v", err)
	}
	if len(events) != 0 {
		t.Errorf("renewals reported %v", events)
	}
	ps, err := f.srv.Proxy("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Toxics) != 1 || ps.Toxics[0].Owner != "run-1.slow-db" {
		t.Fatalf("after 3s of a 1s lease, toxics = %+v: renewal did not keep them", ps.Toxics)
	}
	if d := rtt(t, dialTCP(t, f.proxy["db"])); d < 40*time.Millisecond {
		t.Fatalf("toxic not in force: %s", d)
	}
	// Revert from the ledger record alone, as recover does; twice, as a retried revert would.
	for range 2 {
		if err := NewInjector().Revert(ctx, rec, env); err != nil {
			t.Fatal(err)
		}
	}
	if ps, _ := f.srv.Proxy("db"); len(ps.Toxics) != 0 {
		t.Fatalf("after revert: %+v", ps.Toxics)
	}
}

func TestInjectorRefusesBeforeApplying(t *testing.T) {
	f := newFixture(t, nil, "db", "cache")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + closed.Addr().String()
	closed.Close()
	env := injectors.Env{RunID: "r"}
	for _, c := range []struct {
		fault runbooks.Fault
		want  string
	}{
		{toxicsFault(f.api.URL, "queue", 0), `runs no proxy "queue" (it runs: db, cache)`},
		{toxicsFault(dead, "db", 0), "cannot reach the proxy server"},
	} {
		_, err := NewInjector().Prepare(ctxT(t), c.fault, env)
		var re *policy.RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal saying %q", c.fault.ProxyToxics.Proxy, err, c.want)
		}
	}
	withToken := toxicsFault(f.api.URL, "db", 0)
	withToken.ProxyToxics.TokenFile = t.TempDir() + "/missing"
	if _, err := NewInjector().Prepare(ctxT(t), withToken, env); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("missing token file: %v", err)
	}
	for _, p := range []string{"db", "cache"} {
		if ps, _ := f.srv.Proxy(p); len(ps.Toxics) != 0 {
			t.Errorf("%s: a refused prepare left toxics %+v", p, ps.Toxics)
		}
	}
}

// When the server stops answering, Sustain reports the first failed renewal and fails the window
// once a whole lease passed without one: by then the server has dropped the toxics.
func TestInjectorSustainFailsWhenTheLeaseLapses(t *testing.T) {
	f := newFixture(t, nil, "db")
	// A second API front for the same server that the test can take away.
	front := httptest.NewServer(f.srv.Handler(nil, nil, nil))
	env := injectors.Env{RunID: "run-2"}
	ctx := ctxT(t)
	act, err := NewInjector().Prepare(ctx, toxicsFault(front.URL, "db", time.Second), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctx, noRecord); err != nil {
		t.Fatal(err)
	}
	front.Close()
	var events []injectors.Event
	start := time.Now()
	err = act.(injectors.Sustainer).Sustain(ctx, noRecord, func(e injectors.Event) { events = append(events, e) })
	if err == nil || !strings.Contains(err.Error(), "no lease renewal succeeded") {
		t.Fatalf("sustain: %v, want the lapse reported", err)
	}
	if took := time.Since(start); took < time.Second || took > 3*time.Second {
		t.Errorf("lapse noticed after %s, want about one lease (1s)", took)
	}
	if len(events) != 1 || !strings.Contains(events[0].Message, "lease renewal failed") {
		t.Errorf("events %+v, want one renewal failure", events)
	}
	rec, _ := act.Record()
	if err := NewInjector().Revert(ctx, rec, env); err == nil || !strings.Contains(err.Error(), "recover retries") {
		t.Errorf("revert with the server unreachable: %v", err)
	}
}

// A revert while the fault's renewals still run (the engine reverts as soon as the window ends)
// must stop them: no renewal may put the toxics back after the DELETE.
func TestRevertStopsRenewals(t *testing.T) {
	f := newFixture(t, nil, "db")
	env := injectors.Env{RunID: "run-3"}
	ctx := ctxT(t)
	inj := NewInjector()
	act, err := inj.Prepare(ctx, toxicsFault(f.api.URL, "db", time.Second), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctx, noRecord); err != nil {
		t.Fatal(err)
	}
	sustained := make(chan error, 1)
	go func() {
		sustained <- act.(injectors.Sustainer).Sustain(ctx, noRecord, func(injectors.Event) {})
	}()
	rec, _ := act.Record()
	if err := inj.Revert(ctx, rec, env); err != nil {
		t.Fatal(err)
	}
	// Three renewal periods: without the stop, the next tick would put the toxics back.
	deadline := time.NewTimer(time.Second + 100*time.Millisecond)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-deadline.C:
			done = true
		case <-tick.C:
			if ps, _ := f.srv.Proxy("db"); len(ps.Toxics) != 0 {
				t.Fatalf("a renewal put the toxics back after the revert: %+v", ps.Toxics)
			}
		}
	}
	select {
	case err := <-sustained:
		if err != nil {
			t.Fatalf("sustain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sustain kept running after the revert")
	}
}

// The window ends while a renewal is in flight on a slow server, and the engine reverts at once.
// The renewal must be answered before the revert's DELETE goes out: a renewal abandoned on the
// client side can still be applied by the server after the DELETE, putting the toxics back.
func TestRevertWaitsForTheRenewalInFlight(t *testing.T) {
	f := newFixture(t, nil, "db")
	putStarted := make(chan struct{}, 16)
	slowPuts := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				putStarted <- struct{}{}
				// The fault being simulated: a server slow to apply a request it has received.
				tm := time.NewTimer(300 * time.Millisecond)
				<-tm.C
			}
			h.ServeHTTP(w, r)
		})
	}
	front := httptest.NewServer(slowPuts(f.srv.Handler(nil, nil, nil)))
	defer front.Close()
	env := injectors.Env{RunID: "run-4"}
	inj := NewInjector()
	act, err := inj.Prepare(ctxT(t), toxicsFault(front.URL, "db", time.Second), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctxT(t), noRecord); err != nil {
		t.Fatal(err)
	}
	<-putStarted // Apply's own PUT
	window, endWindow := context.WithCancel(ctxT(t))
	sustained := make(chan error, 1)
	go func() { sustained <- act.(injectors.Sustainer).Sustain(window, noRecord, func(injectors.Event) {}) }()
	select {
	case <-putStarted: // the first renewal is now being handled by the slow server
	case <-time.After(5 * time.Second):
		t.Fatal("no renewal within 5s of a 1s lease")
	}
	endWindow()
	rec, _ := act.Record()
	if err := inj.Revert(ctxT(t), rec, env); err != nil {
		t.Fatal(err)
	}
	if err := <-sustained; err != nil {
		t.Fatalf("sustain: %v", err)
	}
	// Give an abandoned renewal time to land after the DELETE (it would within 300ms).
	tm := time.NewTimer(500 * time.Millisecond)
	<-tm.C
	if ps, _ := f.srv.Proxy("db"); len(ps.Toxics) != 0 {
		t.Fatalf("toxics back after the revert: %+v", ps.Toxics)
	}
}
