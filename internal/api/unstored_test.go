package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
)

func (f *fakeControl) Unstored() []daemon.UnstoredRun {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unstored
}

// A result history refused is reported by status and still served by GET /runs/{id}, with the
// reason, instead of the run vanishing.
func TestUnstoredResultIsReported(t *testing.T) {
	e := start(t)
	end := time.Now()
	sum := daemon.RunSummary{RunID: "lost1", Runbook: "checkout", Trigger: "api", StartedAt: end.Add(-time.Minute), EndedAt: &end, Verdict: experiments.Passed}
	e.control.mu.Lock()
	e.control.unstored = []daemon.UnstoredRun{{RunSummary: sum, StoreError: "history: disk full",
		Result: &experiments.Result{RunID: "lost1", Runbook: "checkout", Verdict: experiments.Passed}}}
	e.control.mu.Unlock()

	r := e.do(http.MethodGet, "/api/v1/status", "Bearer "+readerToken, "")
	var st StatusResponse
	r.decode(t, &st)
	if r.code != http.StatusOK || len(st.Unstored) != 1 || st.Unstored[0].RunID != "lost1" || st.Unstored[0].StoreError != "history: disk full" {
		t.Fatalf("status %d %s: want the unstored run with its error", r.code, r.body)
	}

	r = e.do(http.MethodGet, "/api/v1/runs/lost1", "Bearer "+readerToken, "")
	var rr RunResponse
	r.decode(t, &rr)
	if r.code != http.StatusOK || rr.State != RunFinished || rr.Result == nil || !strings.Contains(rr.StoreError, "disk full") {
		t.Fatalf("GET run %d %s: want the finished run from memory with its store error", r.code, r.body)
	}
}
