// Package ledger owns the record of every fault faultline applies: an entry is written before its
// fault is applied, so that after any crash `faultline recover` (or the next daemon start) can
// revert it from the record alone. It also owns owner liveness (is the run that wrote an entry
// still alive?), which decides whose entries may be reverted.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/faultline-dev/faultline/internal/procfs"
	bolt "go.etcd.io/bbolt"
)

// Entry states. A fault is "recorded" before it is applied and "applied" after; only "reverted"
// is safe to forget. recorded entries are reverted by recover too, because a crash may have come
// after the side effect but before the ledger was told.
const (
	StateRecorded     = "recorded"
	StateApplied      = "applied"
	StateReverted     = "reverted"
	StateRevertFailed = "revert-failed"
)

// Entry is one fault in the ledger.
type Entry struct {
	ID         string          `json:"id"`
	RunID      string          `json:"runId"`
	Runbook    string          `json:"runbook"`
	Experiment string          `json:"experiment"`
	Fault      string          `json:"fault"`
	Kind       string          `json:"kind"`
	Targets    []string        `json:"targets"`
	State      string          `json:"state"`
	Record     json.RawMessage `json:"record"`
	Owner      Owner           `json:"owner"`
	RecordedAt time.Time       `json:"recordedAt"`
	AppliedAt  *time.Time      `json:"appliedAt,omitempty"`
	RevertedAt *time.Time      `json:"revertedAt,omitempty"`
	LastError  string          `json:"lastError,omitempty"`
	// Meta is what the writer keeps beside the injector's record (the node agent: the fault's
	// lease and target). Recover ignores it.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// Open reports whether the entry may still be in effect.
func (e *Entry) Open() bool { return e.State != StateReverted }

// Owner identifies the process that applied a fault, so that recover leaves a live run alone.
type Owner struct {
	// ID names the owner where a pid means nothing to others: a daemon replica's identity.
	ID string `json:"id,omitempty"`
	// Incarnation is random per process start: a replica restarted under the same ID (a pod's
	// container restarted) tells its dead predecessor's entries from its own by it. Entries
	// written before it existed decode with it empty, which no live process has.
	Incarnation string `json:"incarnation,omitempty"`
	PID         int    `json:"pid"`
	Host        string `json:"host"`
	// Start is the process's start time in clock ticks since boot (/proc/PID/stat field 22); with the
	// pid it tells a live owner from an unrelated process that reused the pid.
	Start uint64 `json:"start"`
}

func (o Owner) String() string {
	if o.ID != "" && o.Incarnation != "" {
		return fmt.Sprintf("%s incarnation %s, pid %d on %s", o.ID, o.Incarnation, o.PID, o.Host)
	}
	if o.ID != "" {
		return fmt.Sprintf("%s, pid %d on %s", o.ID, o.PID, o.Host)
	}
	return fmt.Sprintf("pid %d on %s", o.PID, o.Host)
}

// Alive reports whether the owner process still runs on this host.
func (o Owner) Alive() bool {
	host, _ := os.Hostname()
	if o.PID <= 0 || o.Host != host {
		return false
	}
	st, err := procfs.StartTime(o.PID)
	return err == nil && st == o.Start
}

// Self describes the current process as an owner.
func Self() Owner {
	host, _ := os.Hostname()
	st, _ := procfs.StartTime(os.Getpid())
	return Owner{PID: os.Getpid(), Host: host, Start: st}
}

// Ledger is the durable record of applied faults. Every write must be durable when it returns:
// the engine applies a fault only after Put returned nil. There are two backends: a bbolt file for
// the CLI and a single daemon (FileLedger), and objects in the cluster for the daemon's
// high-availability mode, where a new leader must revert what a dead one left.
type Ledger interface {
	// Put writes entries (insert or replace) in one durable step.
	Put(ctx context.Context, entries ...*Entry) error
	// Modify applies fn to the stored entry id and writes it back.
	Modify(ctx context.Context, id string, fn func(*Entry)) error
	// Entries lists entries for which keep returns true (all when keep is nil), in ID order.
	Entries(ctx context.Context, keep func(*Entry) bool) ([]*Entry, error)
	// Prune deletes reverted entries older than age.
	Prune(ctx context.Context, age time.Duration) (int, error)
	// Where names the ledger for messages (a file path, a namespace).
	Where() string
}

// OpenEntries lists entries that may still be in effect.
func OpenEntries(ctx context.Context, l Ledger) ([]*Entry, error) {
	return l.Entries(ctx, func(e *Entry) bool { return e.Open() })
}

// FileLedger is a Ledger in a bbolt file. Each operation opens the file, commits (bbolt fsyncs
// every commit) and closes it again, so that a running experiment, a second `faultline run`
// checking for conflicts and `faultline recover` can all use one ledger; bbolt's file lock
// serialises them.
type FileLedger struct {
	path    string
	timeout time.Duration
}

var bucket = []byte("faults")

// ErrLedger wraps every failure to read or write the ledger; the engine injects nothing without it.
var ErrLedger = errors.New("fault ledger")

// OpenFile prepares the ledger at path, creating it and its directory. It fails if the ledger
// cannot be written, which is the engine's signal to inject nothing.
func OpenFile(path string) (*FileLedger, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: create directory: %w", ErrLedger, err)
	}
	l := &FileLedger{path: path, timeout: 10 * time.Second}
	if err := l.update(context.Background(), func(*bolt.Bucket) error { return nil }); err != nil {
		return nil, err
	}
	return l, nil
}

// Where implements Ledger: the ledger's file.
func (l *FileLedger) Where() string { return l.path }

// lockTimeout bounds the wait for bbolt's file lock by the context's deadline too.
func (l *FileLedger) lockTimeout(ctx context.Context) time.Duration {
	t := l.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < t {
		t = max(time.Until(d), time.Millisecond)
	}
	return t
}

func (l *FileLedger) update(ctx context.Context, fn func(*bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrLedger, err)
	}
	db, err := bolt.Open(l.path, 0o600, &bolt.Options{Timeout: l.lockTimeout(ctx)})
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrLedger, l.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return fn(b)
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrLedger, l.path, err)
	}
	return nil
}

func (l *FileLedger) view(ctx context.Context, fn func(*bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrLedger, err)
	}
	db, err := bolt.Open(l.path, 0o600, &bolt.Options{Timeout: l.lockTimeout(ctx), ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", ErrLedger, l.path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return fn(b)
	})
}

// Put implements Ledger in one durable commit.
func (l *FileLedger) Put(ctx context.Context, entries ...*Entry) error {
	return l.update(ctx, func(b *bolt.Bucket) error {
		for _, e := range entries {
			v, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode entry %s: %w", e.ID, err)
			}
			if err := b.Put([]byte(e.ID), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Modify implements Ledger in one commit.
func (l *FileLedger) Modify(ctx context.Context, id string, fn func(*Entry)) error {
	return l.update(ctx, func(b *bolt.Bucket) error {
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("entry %s not found", id)
		}
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode entry %s: %w", id, err)
		}
		fn(&e)
		nv, err := json.Marshal(&e)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
}

// Entries implements Ledger.
func (l *FileLedger) Entries(ctx context.Context, keep func(*Entry) bool) ([]*Entry, error) {
	var out []*Entry
	err := l.view(ctx, func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode entry %s: %w", k, err)
			}
			if keep == nil || keep(&e) {
				out = append(out, &e)
			}
			return nil
		})
	})
	return out, err
}

// Prune implements Ledger, keeping the file small.
func (l *FileLedger) Prune(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	n := 0
	err := l.update(ctx, func(b *bolt.Bucket) error {
		var del [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var e Entry
			if json.Unmarshal(v, &e) == nil && !e.Open() && e.RevertedAt != nil && e.RevertedAt.Before(cutoff) {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(del)
		return nil
	})
	return n, err
}
