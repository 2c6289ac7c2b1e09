package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/history/historytest"
	"github.com/faultline-dev/faultline/internal/history/pgstore"
	"github.com/faultline-dev/faultline/internal/testenv/pg"
)

func openStore(t testing.TB, dsn string, opts history.Options) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := pg.Start(t)
	historytest.Run(t, func(t *testing.T, opts history.Options) history.Backend {
		return openStore(t, srv.NewDatabase(t), opts)
	})
}

func TestMigrations(t *testing.T) {
	srv := pg.Start(t)
	dsn := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	todo, err := pgstore.Pending(ctx, dsn)
	if err != nil || len(todo) != len(pgstore.Migrations()) {
		t.Fatalf("Pending on a new database = %d migrations, %v; want all %d", len(todo), err, len(pgstore.Migrations()))
	}
	// The dry run changed nothing: no table was created.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'faultline_%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tables after Pending = %d, %v; want none", n, err)
	}

	// Replicas that start together migrate once.
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := pgstore.Open(ctx, dsn, history.Options{}, nil)
			if err == nil {
				_ = s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	if todo, err := pgstore.Pending(ctx, dsn); err != nil || len(todo) != 0 {
		t.Fatalf("Pending after Open = %v, %v; want none", todo, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM faultline_schema_migrations`).Scan(&n); err != nil || n != len(pgstore.Migrations()) {
		t.Fatalf("recorded migrations = %d, %v", n, err)
	}

	// A database migrated by a newer faultline is refused, not written in a schema it does not know.
	if _, err := conn.Exec(ctx, `INSERT INTO faultline_schema_migrations (version, name) VALUES (999, 'from the future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(ctx, dsn, history.Options{}, nil); err == nil || !strings.Contains(err.Error(), "version 999") {
		t.Fatalf("Open of a newer schema = %v, want a refusal naming version 999", err)
	}
}

func TestUnreachableAndBack(t *testing.T) {
	srv := pg.Start(t)
	s := openStore(t, srv.NewDatabase(t), history.Options{})
	defer s.Close()
	res := historytest.Result("r1", "rb", "passed", time.Now())
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Put(ctx, history.SummaryOf(res, "s", "schedule"), res); err == nil {
		t.Fatal("Put with the database stopped: no error")
	}
	srv.Restart()
	// The pool reconnects by itself: the same Store writes once the server is back.
	if err := s.Put(ctx, history.SummaryOf(res, "s", "schedule"), res); err != nil {
		t.Fatalf("Put after the restart: %v", err)
	}
	if _, err := s.Get(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
}

func TestBadDSNNotEchoed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := pgstore.Open(ctx, "postgres://u:s3cret-pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", history.Options{}, nil)
	if err == nil {
		t.Fatal("Open of an unreachable database: no error")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the error shows the password: %v", err)
	}
	_, err = pgstore.Open(ctx, "postgres://u:s3cret-pw@127.0.0.1:notaport/db", history.Options{}, nil)
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("Open of a DSN that does not parse = %v; want an error without the password", err)
	}
}
