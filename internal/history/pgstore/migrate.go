package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Migration is one versioned change of the schema. Applied migrations are recorded in
// faultline_schema_migrations; a migration is never edited once released, only added after.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations is the schema, in order.
func Migrations() []Migration {
	return []Migration{
		{1, "runs table", `CREATE TABLE faultline_runs (
	run_id     text COLLATE "C" PRIMARY KEY,
	schedule   text NOT NULL,
	runbook    text NOT NULL,
	trigger    text NOT NULL,
	verdict    text NOT NULL,
	started_ns bigint NOT NULL,
	finished   boolean NOT NULL,
	summary    json NOT NULL,
	result     json
);
CREATE INDEX faultline_runs_started ON faultline_runs (started_ns DESC, run_id DESC)`},
		{2, "indexes for the per-schedule lists and unfinished runs", `CREATE INDEX faultline_runs_schedule ON faultline_runs (schedule, started_ns DESC, run_id DESC);
CREATE INDEX faultline_runs_unfinished ON faultline_runs (started_ns DESC) WHERE NOT finished`},
	}
}

// migrationLock is the advisory lock replicas that start together take in turn, so that each
// migration is applied once.
const migrationLock = 0x6661756c746c696e // "faultlin"

const createMigrations = `CREATE TABLE IF NOT EXISTS faultline_schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// applied returns the versions recorded in the database; none when the table does not exist.
func applied(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (map[int]bool, error) {
	rows, err := q.Query(ctx, `SELECT version FROM faultline_schema_migrations`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: a new database
		return map[int]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, v := range vs {
		out[v] = true
	}
	return out, nil
}

// pending returns the migrations not applied yet, and refuses a database migrated by a newer
// faultline (its schema may not be what this one writes).
func pending(done map[int]bool) ([]Migration, error) {
	all := Migrations()
	for v := range done {
		if v > all[len(all)-1].Version {
			return nil, fmt.Errorf("the database's history schema is at version %d, newer than this faultline knows (%d): upgrade faultline", v, all[len(all)-1].Version)
		}
	}
	var out []Migration
	for _, m := range all {
		if !done[m.Version] {
			out = append(out, m)
		}
	}
	return out, nil
}

// Pending connects to the database and returns the migrations Open would apply, changing
// nothing (faultline history migrate --dry-run).
func Pending(ctx context.Context, dsn string) ([]Migration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to the history database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	done, err := applied(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("read the applied migrations: %w", err)
	}
	return pending(done)
}

// migrate applies the pending migrations in one transaction under an advisory lock, and returns
// those it applied.
func migrate(ctx context.Context, conn *pgx.Conn) ([]Migration, error) {
	var out []Migration
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, createMigrations); err != nil {
			return fmt.Errorf("create faultline_schema_migrations: %w", err)
		}
		done, err := applied(ctx, tx)
		if err != nil {
			return fmt.Errorf("read the applied migrations: %w", err)
		}
		todo, err := pending(done)
		if err != nil {
			return err
		}
		for _, m := range todo {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO faultline_schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %d: %w", m.Version, err)
			}
		}
		out = todo
		return nil
	})
	return out, err
}
