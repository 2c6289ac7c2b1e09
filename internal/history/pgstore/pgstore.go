// Package pgstore keeps the daemon's history in PostgreSQL, so that every replica reads (and the
// leader writes) the same runs: after a failover the API still shows the whole past, and the
// per-day cap and the previous run of a schedule are read from it. The schema is versioned
// (Migrations) and migrated at Open.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
)

// Store is a history.Backend in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	ret  history.Retention
	now  func() time.Time
}

var _ history.Backend = (*Store)(nil)

// Open connects to the database named by dsn and applies the pending migrations. The DSN holds
// a password: it is never part of an error or a log line (pgx redacts it in parse errors).
func Open(ctx context.Context, dsn string, opts history.Options, log *slog.Logger) (*Store, error) {
	if opts.Retention.MaxRuns < 0 || opts.Retention.MaxAge < 0 {
		return nil, errors.New("open history database: retention must not be negative")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("history database DSN: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A database that went away must not hold a run's end for long: its result is kept
		// and written later.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open history database: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the history database: %w", err)
	}
	done, err := migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate the history database: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	for _, m := range done {
		log.Info("history database migrated", "version", m.Version, "migration", m.Name)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, ret: opts.Retention, now: now}, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Put implements history.Backend: the run's row is inserted or replaced, and retention applied,
// in one transaction.
func (s *Store) Put(ctx context.Context, sum history.Summary, res *experiments.Result) error {
	sv, rv, err := history.Encode(sum, res)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, upsert, upsertArgs(sum, sv, rv)...)
		if err != nil {
			return err
		}
		_, err = s.retain(ctx, tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store run %s in history database: %w", sum.RunID, err)
	}
	return nil
}

const upsert = `INSERT INTO faultline_runs
	(run_id, schedule, runbook, trigger, verdict, started_ns, finished, summary, result)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
	ON CONFLICT (run_id) DO UPDATE SET schedule = EXCLUDED.schedule, runbook = EXCLUDED.runbook,
		trigger = EXCLUDED.trigger, verdict = EXCLUDED.verdict, started_ns = EXCLUDED.started_ns,
		finished = EXCLUDED.finished, summary = EXCLUDED.summary, result = EXCLUDED.result`

func upsertArgs(sum history.Summary, sv, rv []byte) []any {
	return []any{sum.RunID, sum.Schedule, sum.Runbook, sum.Trigger, string(sum.Verdict), sum.StartedAt.UnixNano(),
		sum.EndedAt != nil, string(sv), nullJSON(rv)}
}

// PutBatch stores many runs in one transaction (a bulk load, or moving a history between
// stores), then applies retention once.
func (s *Store) PutBatch(ctx context.Context, recs []history.Record) error {
	batch := &pgx.Batch{}
	for _, r := range recs {
		sv, rv, err := history.Encode(r.Summary, r.Result)
		if err != nil {
			return err
		}
		batch.Queue(upsert, upsertArgs(r.Summary, sv, rv)...)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		_, err := s.retain(ctx, tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("store %d runs in history database: %w", len(recs), err)
	}
	return nil
}

func nullJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// retain deletes what retention does not keep: runs started before now-MaxAge, and all but the
// newest MaxRuns.
func (s *Store) retain(ctx context.Context, tx pgx.Tx) (int, error) {
	n := 0
	if s.ret.MaxAge > 0 {
		tag, err := tx.Exec(ctx, `DELETE FROM faultline_runs WHERE started_ns < $1`, s.now().Add(-s.ret.MaxAge).UnixNano())
		if err != nil {
			return 0, fmt.Errorf("retention by age: %w", err)
		}
		n += int(tag.RowsAffected())
	}
	if s.ret.MaxRuns > 0 {
		tag, err := tx.Exec(ctx, `DELETE FROM faultline_runs WHERE run_id IN (
	SELECT run_id FROM faultline_runs ORDER BY started_ns DESC, run_id DESC OFFSET $1)`, s.ret.MaxRuns)
		if err != nil {
			return 0, fmt.Errorf("retention by count: %w", err)
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

// Compact implements history.Backend.
func (s *Store) Compact(ctx context.Context) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		n, err = s.retain(ctx, tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("compact history database: %w", err)
	}
	return n, nil
}

// Get implements history.Backend.
func (s *Store) Get(ctx context.Context, runID string) (*history.Record, error) {
	var sv, rv []byte
	err := s.pool.QueryRow(ctx, `SELECT summary, result FROM faultline_runs WHERE run_id = $1`, runID).Scan(&sv, &rv)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read run %s from history database: %w", runID, history.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s from history database: %w", runID, err)
	}
	rec := &history.Record{}
	if err := json.Unmarshal(sv, &rec.Summary); err != nil {
		return nil, fmt.Errorf("read run %s from history database: decode summary: %w", runID, err)
	}
	if rv != nil {
		rec.Result = &experiments.Result{}
		if err := json.Unmarshal(rv, rec.Result); err != nil {
			return nil, fmt.Errorf("read run %s from history database: decode result: %w", runID, err)
		}
	}
	return rec, nil
}

// List implements history.Backend; only summaries are read.
func (s *Store) List(ctx context.Context, f history.Filter) ([]history.Summary, error) {
	if f.Offset < 0 || f.Limit < 0 {
		return nil, errors.New("list history: offset and limit must not be negative")
	}
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if f.Schedule != "" {
		where = append(where, "schedule = "+arg(f.Schedule))
	}
	if f.Runbook != "" {
		where = append(where, "runbook = "+arg(f.Runbook))
	}
	if f.Verdict != "" {
		where = append(where, "verdict = "+arg(string(f.Verdict)))
	}
	if !f.Since.IsZero() {
		where = append(where, "started_ns >= "+arg(f.Since.UnixNano()))
	}
	if f.Unfinished {
		where = append(where, "NOT finished")
	}
	q := "SELECT summary FROM faultline_runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_ns DESC, run_id DESC"
	if f.Limit > 0 {
		q += " LIMIT " + arg(f.Limit)
	}
	if f.Offset > 0 {
		q += " OFFSET " + arg(f.Offset)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list history database: %w", err)
	}
	out := []history.Summary{}
	var sv []byte
	_, err = pgx.ForEachRow(rows, []any{&sv}, func() error {
		var sum history.Summary
		if err := json.Unmarshal(sv, &sum); err != nil {
			return fmt.Errorf("decode summary: %w", err)
		}
		out = append(out, sum)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list history database: %w", err)
	}
	return out, nil
}

var (
	_ daemon.UnfinishedLister = (*Store)(nil)
	_ daemon.PreviousResults  = (*Store)(nil)
	_ daemon.Results          = (*Store)(nil)
)
