package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// maxUnstored bounds the records held when history cannot take them; past it the oldest is
// dropped, with an error in the log.
const maxUnstored = 1000

// UnstoredRun is a run record that could not be written to history yet. The daemon keeps it (in
// memory, and in Options.PendingFile when set) and writes it when history takes writes again;
// meanwhile the API and `faultline status` say so instead of the run vanishing.
type UnstoredRun struct {
	RunSummary
	StoreError string              `json:"storeError"`
	Attempts   int                 `json:"attempts,omitempty"`
	Result     *experiments.Result `json:"-"`
	// seq tells a kept record from a newer one of the same run.
	seq uint64
}

// pendingRecord is an UnstoredRun as the pending file keeps it, result included.
type pendingRecord struct {
	UnstoredRun
	Result *experiments.Result `json:"result,omitempty"`
}

// UnstoredResults is implemented by the daemon: the records history refused, oldest first. It is
// apart from Control so that Control's other implementations need not know about history.
type UnstoredResults interface {
	Unstored() []UnstoredRun
}

// Unstored implements UnstoredResults.
func (d *Daemon) Unstored() []UnstoredRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.unstored)
}

// store writes a run's record to history. A record history refuses is kept and retried by
// retryUnstored; a newer record of the same run replaces it. Writes are serialised so that a
// retried record never overwrites a newer one.
func (d *Daemon) store(ctx context.Context, sum RunSummary, res *experiments.Result) {
	d.storeMu.Lock()
	defer d.storeMu.Unlock()
	d.storeLocked(ctx, sum, res)
}

func (d *Daemon) storeLocked(ctx context.Context, sum RunSummary, res *experiments.Result) {
	err := d.o.Results.Put(ctx, sum, res)
	if err == nil {
		d.dropUnstored(sum.RunID)
		return
	}
	d.o.Metrics.HistoryWriteFailed()
	d.log.Error("store run in history; the record is kept and written when history is back", "run", sum.RunID, "err", err)
	d.keepUnstored(UnstoredRun{RunSummary: sum, StoreError: err.Error(), Attempts: 1, Result: res})
}

func (d *Daemon) keepUnstored(u UnstoredRun) {
	d.mu.Lock()
	d.unstoredSeq++
	u.seq = d.unstoredSeq
	i := slices.IndexFunc(d.unstored, func(o UnstoredRun) bool { return o.RunID == u.RunID })
	if i >= 0 {
		u.Attempts += d.unstored[i].Attempts
		d.unstored = slices.Delete(d.unstored, i, i+1)
	}
	d.unstored = append(d.unstored, u)
	if n := len(d.unstored) - maxUnstored; n > 0 {
		for _, lost := range d.unstored[:n] {
			d.log.Error("run record dropped: too many records wait for history", "run", lost.RunID, "verdict", lost.Verdict)
		}
		d.unstored = slices.Delete(d.unstored, 0, n)
	}
	d.mu.Unlock()
	d.unstoredChanged()
}

func (d *Daemon) dropUnstored(runID string) {
	d.mu.Lock()
	n := len(d.unstored)
	d.unstored = slices.DeleteFunc(d.unstored, func(o UnstoredRun) bool { return o.RunID == runID })
	changed := n != len(d.unstored)
	d.mu.Unlock()
	if changed {
		d.unstoredChanged()
	}
}

// unstoredChanged updates the gauge and the pending file; storeMu is held.
func (d *Daemon) unstoredChanged() {
	d.mu.Lock()
	recs := make([]pendingRecord, 0, len(d.unstored))
	for _, u := range d.unstored {
		recs = append(recs, pendingRecord{UnstoredRun: u, Result: u.Result})
	}
	d.mu.Unlock()
	d.o.Metrics.HistoryPending(len(recs))
	if d.o.PendingFile == "" {
		return
	}
	if err := writePending(d.o.PendingFile, recs); err != nil {
		d.log.Error("keep the records history refused on disk; they are in memory only", "file", d.o.PendingFile, "err", err)
	}
}

func writePending(path string, recs []pendingRecord) error {
	if len(recs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pending-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadPending reads the records an earlier process could not write (it may have died before
// history came back).
func (d *Daemon) loadPending() {
	if d.o.PendingFile == "" {
		return
	}
	data, err := os.ReadFile(d.o.PendingFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var recs []pendingRecord
	if err == nil {
		err = json.Unmarshal(data, &recs)
	}
	if err != nil {
		d.log.Error("read the records an earlier daemon could not write to history", "file", d.o.PendingFile, "err", err)
		return
	}
	d.mu.Lock()
	for _, r := range recs {
		d.unstoredSeq++
		r.UnstoredRun.Result, r.UnstoredRun.seq = r.Result, d.unstoredSeq
		d.unstored = append(d.unstored, r.UnstoredRun)
	}
	d.mu.Unlock()
	d.o.Metrics.HistoryPending(len(recs))
	d.log.Warn("records an earlier daemon could not write to history are retried", "runs", len(recs))
}

// retryUnstored writes the kept records every interval until ctx ends, and on the way out tries
// once more; what is still unwritten then stays in the pending file (or is reported lost).
func (d *Daemon) retryUnstored(ctx context.Context) {
	interval := d.o.HistoryRetry
	if interval <= 0 {
		interval = 5 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			d.flushUnstored(fctx)
			cancel()
			if left := d.Unstored(); len(left) > 0 {
				where := "lost with this process"
				if d.o.PendingFile != "" {
					where = "kept in " + d.o.PendingFile + " for the next start"
				}
				d.log.Error("run records not written to history at shutdown: "+where, "runs", len(left))
			}
			return
		case <-tick.C:
			d.flushUnstored(ctx)
			d.closeOrphanedRuns(ctx)
		}
	}
}

func (d *Daemon) flushUnstored(ctx context.Context) {
	for _, u := range d.Unstored() {
		if ctx.Err() != nil {
			return
		}
		d.storeMu.Lock()
		// A newer record of the run may have been written (or kept) meanwhile.
		cur := slices.IndexFunc(d.Unstored(), func(o UnstoredRun) bool { return o.seq == u.seq })
		if cur < 0 {
			d.storeMu.Unlock()
			continue
		}
		err := d.o.Results.Put(ctx, u.RunSummary, u.Result)
		if err == nil {
			d.dropUnstored(u.RunID)
			d.log.Warn("run record written to history after it was refused", "run", u.RunID, "failed_attempts", u.Attempts)
		} else {
			d.o.Metrics.HistoryWriteFailed()
			d.log.Warn("history still refuses a kept run record", "run", u.RunID, "attempts", u.Attempts+1, "err", err)
			d.keepUnstored(UnstoredRun{RunSummary: u.RunSummary, StoreError: err.Error(), Attempts: 1, Result: u.Result})
		}
		d.storeMu.Unlock()
		if err != nil {
			return // history is still down: the others wait for the next round
		}
	}
}

// OrphanedReason is the reason given to a run a dead replica (or process) left unfinished.
const OrphanedReason = "orphaned: the daemon running it stopped before the run ended; its faults were reverted by "

// closeOrphanedRuns ends, in history, the runs stored when they started whose replica died: once
// this replica leads and has reverted the ledger's orphans, a run that is unfinished in history
// and not running here is over. They are recorded as aborted. Until it succeeds once per term
// it is retried with the kept records.
func (d *Daemon) closeOrphanedRuns(ctx context.Context) {
	lister, ok := d.o.Results.(UnfinishedLister)
	if !ok || !d.leader.Load() || d.orphansClosed.Load() {
		return
	}
	// Held throughout: a run of this process leaves d.runs only after its final record is
	// written (or kept), which needs storeMu, so a run seen unfinished below and not in d.runs
	// is not one of ours that is ending right now.
	d.storeMu.Lock()
	defer d.storeMu.Unlock()
	runs, err := lister.Unfinished(ctx)
	if err != nil {
		d.log.Warn("list unfinished runs in history; retried", "err", err)
		return
	}
	for _, r := range runs {
		d.mu.Lock()
		_, mine := d.runs[r.RunID]
		d.mu.Unlock()
		if mine || slices.ContainsFunc(d.Unstored(), func(u UnstoredRun) bool { return u.RunID == r.RunID && u.EndedAt != nil }) {
			continue
		}
		end := time.Now()
		r.EndedAt, r.Verdict, r.ExitCode = &end, experiments.Aborted, experiments.Aborted.ExitCode()
		r.Reason = OrphanedReason + d.o.Identity
		if r.Replica != "" {
			r.Reason = fmt.Sprintf("orphaned: replica %s stopped before the run ended; its faults were reverted by %s", r.Replica, d.o.Identity)
		}
		d.storeLocked(ctx, r, nil)
		d.o.Metrics.Run(r.Schedule, string(r.Verdict))
		d.log.Warn("run left unfinished by a dead daemon recorded as aborted", "run", r.RunID, "replica", r.Replica, "schedule", r.Schedule)
	}
	d.orphansClosed.Store(true)
}

// UnfinishedLister is implemented by a Results store that can list the runs stored at their
// start and not finished since.
type UnfinishedLister interface {
	Unfinished(ctx context.Context) ([]RunSummary, error)
}
