package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/history/pgstore"
)

func (m *Main) historyMigrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "apply (or with --dry-run, list) the schema migrations of a PostgreSQL history",
		Description: `Reads the daemon config's history.postgres.dsnFile and brings the database's history schema to
this faultline's version. The daemon does the same at start; run this ahead of an upgrade to see
(--dry-run) or apply the changes under your own control. A database migrated by a newer
faultline is refused.

Exit codes: 0 done (or nothing to do), 4 invalid config or DSN file, 5 the database refused or
could not be reached.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Required: true, Usage: "daemon config file"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the pending migrations and their SQL; change nothing"},
		},
		Action: func(c *cli.Context) error {
			lc, err := daemon.LoadConfig(c.String("config"))
			if err != nil {
				fmt.Fprintln(m.Stderr, err)
				return exitWith(exitInvalid, errors.New("the daemon config is not valid"))
			}
			if lc.History.Postgres == nil {
				return exitWith(exitInvalid, errors.New("the config has no history.postgres: the bbolt history needs no migration"))
			}
			dsn, err := lc.History.Postgres.ReadDSN()
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			todo, err := pgstore.Pending(ctx, dsn)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			if len(todo) == 0 {
				fmt.Fprintln(m.Stdout, "history schema is up to date")
				return nil
			}
			for _, mg := range todo {
				fmt.Fprintf(m.Stdout, "-- migration %d: %s\n%s;\n", mg.Version, mg.Name, mg.SQL)
			}
			if c.Bool("dry-run") {
				fmt.Fprintf(m.Stdout, "%d migration(s) pending; nothing applied (--dry-run)\n", len(todo))
				return nil
			}
			log, err := m.logger(c)
			if err != nil {
				return err
			}
			s, err := pgstore.Open(ctx, dsn, history.Options{}, log)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			_ = s.Close()
			fmt.Fprintf(m.Stdout, "%d migration(s) applied\n", len(todo))
			return nil
		},
	}
}
