// Package history keeps the daemon's runs — a summary for lists and the full result document —
// with retention by count and by age. Store keeps them in a bbolt file of one replica; package
// pgstore keeps them in a PostgreSQL database that every replica shares. Both are a Backend.
//
// Unlike the CLI's fault ledger, which opens and closes its file on every operation so that
// several processes can share it, a Store keeps its file open for the life of the daemon: one
// process owns it (bbolt's file lock keeps a second one out), and others read it through the API.
// A Store is the daemon's Results (Save) and the API's History (Get, List).
package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
)

// Summary is a run as lists show it: the daemon's RunSummary.
type Summary = daemon.RunSummary

// SummaryOf summarises a result document; schedule is empty for a run not started by one, and
// trigger says what started it (schedule, api).
func SummaryOf(res *experiments.Result, schedule, trigger string) Summary {
	s := Summary{
		RunID: res.RunID, Schedule: schedule, Runbook: res.Runbook, Trigger: trigger,
		StartedAt: res.StartedAt, Verdict: res.Verdict, ExitCode: res.ExitCode, Reason: res.Reason,
	}
	if !res.EndedAt.IsZero() {
		end := res.EndedAt
		s.EndedAt = &end
	}
	return s
}

// Record is one stored run.
type Record struct {
	Summary Summary `json:"summary"`
	// Result is the full result document; nil when the run ended without one.
	Result *experiments.Result `json:"result,omitempty"`
}

// Encode checks a run for storing (a run ID, and a result of that run) and encodes its summary and
// result as every store keeps them; result is nil when the run has no result document.
func Encode(sum Summary, res *experiments.Result) (summary, result []byte, err error) {
	if sum.RunID == "" {
		return nil, nil, errors.New("store run in history: empty run ID")
	}
	if res != nil && res.RunID != sum.RunID {
		return nil, nil, fmt.Errorf("store run %s in history: result is of run %q", sum.RunID, res.RunID)
	}
	if summary, err = json.Marshal(sum); err != nil {
		return nil, nil, fmt.Errorf("store run %s in history: encode summary: %w", sum.RunID, err)
	}
	if res != nil {
		if result, err = json.Marshal(res); err != nil {
			return nil, nil, fmt.Errorf("store run %s in history: encode result: %w", sum.RunID, err)
		}
	}
	return summary, result, nil
}

// Retention bounds what the store keeps. A zero field means no bound of that kind.
type Retention struct {
	// MaxRuns keeps the newest MaxRuns runs (by start time).
	MaxRuns int
	// MaxAge drops runs that started longer ago than MaxAge.
	MaxAge time.Duration
}

// Options configure a Store.
type Options struct {
	Retention Retention
	// Now is the clock retention by age is measured with; time.Now when nil.
	Now func() time.Time
	// LockTimeout bounds the wait for another process's lock on the file (and is itself bounded
	// by the context's deadline); 5s when zero.
	LockTimeout time.Duration
}

// Filter selects runs for List. Zero fields select everything.
type Filter struct {
	Schedule string
	Runbook  string
	Verdict  experiments.Verdict
	// Since keeps runs that started at or after Since.
	Since time.Time
	// Unfinished keeps only runs stored when they started and not since (no EndedAt): running
	// somewhere, or left behind by a replica that died.
	Unfinished bool
	// Offset skips that many selected runs (newest first), for paging.
	Offset int
	// Limit caps the number of runs returned (newest first); 0 means no cap.
	Limit int
}

// needles are byte strings every stored summary f selects contains (its encoded "schedule",
// "runbook" and "verdict" fields): a cheap test that spares decoding the others. A summary that
// contains them may still not match (the text may be in its reason); matches decides.
func (f Filter) needles() [][]byte {
	var out [][]byte
	for _, kv := range []struct{ k, v string }{{"schedule", f.Schedule}, {"runbook", f.Runbook}, {"verdict", string(f.Verdict)}} {
		if kv.v != "" {
			v, _ := json.Marshal(kv.v)
			out = append(out, append([]byte(`"`+kv.k+`":`), v...))
		}
	}
	return out
}

func containsAll(b []byte, needles [][]byte) bool {
	for _, n := range needles {
		if !bytes.Contains(b, n) {
			return false
		}
	}
	return true
}

// Backend is a history store. Put replaces an earlier record of the same run ID; Compact applies
// retention and returns the number of runs dropped.
type Backend interface {
	Put(ctx context.Context, sum Summary, res *experiments.Result) error
	Get(ctx context.Context, runID string) (*Record, error)
	List(ctx context.Context, f Filter) ([]Summary, error)
	Compact(ctx context.Context) (int, error)
	Close() error
}

var _ Backend = (*Store)(nil)

// matches applies the fields of f that are not about order or paging.
func (f Filter) matches(s Summary) bool {
	return (f.Schedule == "" || s.Schedule == f.Schedule) &&
		(f.Runbook == "" || s.Runbook == f.Runbook) &&
		(f.Verdict == "" || s.Verdict == f.Verdict) &&
		(!f.Unfinished || s.EndedAt == nil)
}

// ErrNotFound is returned by Get for a run the store does not hold (never stored, or dropped by
// retention).
var ErrNotFound = errors.New("run not found in history")

// Buckets. A run is stored under its ordering key (start time, then run ID) in summaries, and
// under its run ID in results and ids (which maps a run ID to its ordering key).
var (
	bucketSummaries = []byte("summaries")
	bucketResults   = []byte("results")
	bucketIDs       = []byte("ids")
	bucketMeta      = []byte("meta")
	keyVersion      = []byte("version")
)

const schemaVersion = "1"

// Store is the history file, open for the life of the process.
type Store struct {
	db   *bolt.DB
	path string
	ret  Retention
	now  func() time.Time
}

// Open opens (or creates, with its directory) the history file at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.Retention.MaxRuns < 0 || opts.Retention.MaxAge < 0 {
		return nil, fmt.Errorf("open history %s: retention must not be negative", path)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open history %s: create directory: %w", path, err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open history %s: locked by another process (one daemon owns it): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSummaries, bucketResults, bucketIDs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("schema version %q, this faultline reads %q", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, path: path, ret: opts.Retention, now: now}, nil
}

// Path is the history file.
func (s *Store) Path() string { return s.path }

// Close closes the file; the Store is unusable afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close history %s: %w", s.path, err)
	}
	return nil
}

// orderKey sorts by start time, then run ID. The sign bit is flipped so that times before 1970
// sort before later ones.
func orderKey(started time.Time, runID string) []byte {
	k := make([]byte, 8, 8+len(runID))
	binary.BigEndian.PutUint64(k, uint64(started.UnixNano())^(1<<63))
	return append(k, runID...)
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])^(1<<63)))
}

// Put stores a finished run (replacing an earlier record of the same run ID) in one durable
// commit, then applies retention. res may be nil; when set, its run ID must be sum's.
func (s *Store) Put(ctx context.Context, sum Summary, res *experiments.Result) error {
	sv, rv, err := Encode(sum, res)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store run %s in history: %w", sum.RunID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		sums, results, ids := tx.Bucket(bucketSummaries), tx.Bucket(bucketResults), tx.Bucket(bucketIDs)
		id := []byte(sum.RunID)
		if old := ids.Get(id); old != nil {
			if err := sums.Delete(old); err != nil {
				return err
			}
		}
		key := orderKey(sum.StartedAt, sum.RunID)
		if err := sums.Put(key, sv); err != nil {
			return err
		}
		if err := ids.Put(id, key); err != nil {
			return err
		}
		if rv == nil {
			if err := results.Delete(id); err != nil {
				return err
			}
		} else if err := results.Put(id, rv); err != nil {
			return err
		}
		_, err := s.retain(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store run %s in history %s: %w", sum.RunID, s.path, err)
	}
	return nil
}

// Save implements daemon.Results: it is Put.
func (s *Store) Save(ctx context.Context, sum daemon.RunSummary, res *experiments.Result) error {
	return s.Put(ctx, sum, res)
}

var _ daemon.Results = (*Store)(nil)

// Compact applies retention now (Put does too) and returns the number of runs dropped. The
// daemon calls it periodically so that MaxAge holds when no runs finish.
func (s *Store) Compact(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("compact history %s: %w", s.path, err)
	}
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = s.retain(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("compact history %s: %w", s.path, err)
	}
	return n, nil
}

// retain drops the runs retention does not keep: every run that started before now-MaxAge, and
// all but the newest MaxRuns.
func (s *Store) retain(tx *bolt.Tx) (int, error) {
	sums := tx.Bucket(bucketSummaries)
	var drop [][]byte
	kept := 0
	var cutoff time.Time
	if s.ret.MaxAge > 0 {
		cutoff = s.now().Add(-s.ret.MaxAge)
	}
	c := sums.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		tooMany := s.ret.MaxRuns > 0 && kept >= s.ret.MaxRuns
		tooOld := !cutoff.IsZero() && keyTime(k).Before(cutoff)
		if tooMany || tooOld {
			drop = append(drop, append([]byte(nil), k...))
			continue
		}
		kept++
	}
	for _, k := range drop {
		id := k[8:]
		if err := sums.Delete(k); err != nil {
			return 0, err
		}
		if err := tx.Bucket(bucketResults).Delete(id); err != nil {
			return 0, err
		}
		if err := tx.Bucket(bucketIDs).Delete(id); err != nil {
			return 0, err
		}
	}
	return len(drop), nil
}

// Get returns the stored run, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, runID string) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read run %s from history: %w", runID, err)
	}
	var rec *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		key := tx.Bucket(bucketIDs).Get([]byte(runID))
		if key == nil {
			return ErrNotFound
		}
		rec = &Record{}
		if err := json.Unmarshal(tx.Bucket(bucketSummaries).Get(key), &rec.Summary); err != nil {
			return fmt.Errorf("decode summary: %w", err)
		}
		if rv := tx.Bucket(bucketResults).Get([]byte(runID)); rv != nil {
			rec.Result = &experiments.Result{}
			if err := json.Unmarshal(rv, rec.Result); err != nil {
				return fmt.Errorf("decode result: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read run %s from history %s: %w", runID, s.path, err)
	}
	return rec, nil
}

// List returns the summaries of the runs f selects, newest first. Only summaries are decoded,
// so listing does not pay for the result documents.
func (s *Store) List(ctx context.Context, f Filter) ([]Summary, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list history: %w", err)
	}
	if f.Offset < 0 || f.Limit < 0 {
		return nil, errors.New("list history: offset and limit must not be negative")
	}
	out := []Summary{}
	skip := f.Offset
	need := f.needles()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSummaries).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if !f.Since.IsZero() && keyTime(k).Before(f.Since) {
				break // everything further back started earlier still
			}
			if !containsAll(v, need) {
				continue // cannot match: not worth decoding
			}
			var sum Summary
			if err := json.Unmarshal(v, &sum); err != nil {
				return fmt.Errorf("decode summary of %s: %w", k[8:], err)
			}
			if !f.matches(sum) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			out = append(out, sum)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list history %s: %w", s.path, err)
	}
	return out, nil
}

var _ daemon.UnfinishedLister = (*Store)(nil)

// PutBatch stores many runs in one commit (a bulk load, or moving a history between stores),
// then applies retention once. Each record is checked as Put checks it.
func (s *Store) PutBatch(ctx context.Context, recs []Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store %d runs in history: %w", len(recs), err)
	}
	type enc struct{ key, id, sv, rv []byte }
	encs := make([]enc, 0, len(recs))
	for _, r := range recs {
		sv, rv, err := Encode(r.Summary, r.Result)
		if err != nil {
			return err
		}
		encs = append(encs, enc{orderKey(r.Summary.StartedAt, r.Summary.RunID), []byte(r.Summary.RunID), sv, rv})
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		sums, results, ids := tx.Bucket(bucketSummaries), tx.Bucket(bucketResults), tx.Bucket(bucketIDs)
		for _, e := range encs {
			if old := ids.Get(e.id); old != nil {
				if err := sums.Delete(old); err != nil {
					return err
				}
			}
			if err := sums.Put(e.key, e.sv); err != nil {
				return err
			}
			if err := ids.Put(e.id, e.key); err != nil {
				return err
			}
			var err error
			if e.rv == nil {
				err = results.Delete(e.id)
			} else {
				err = results.Put(e.id, e.rv)
			}
			if err != nil {
				return err
			}
		}
		_, err := s.retain(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store %d runs in history %s: %w", len(recs), s.path, err)
	}
	return nil
}
