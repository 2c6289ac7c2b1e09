package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/faultline-dev/faultline/internal/api"
	"github.com/faultline-dev/faultline/internal/daemon"
)

// reloads drives the daemon's config reloads that do not come through the API: SIGHUP and a
// change of the config file or its runbooks. Every reload, whatever asked for it, is audited.
type reloads struct {
	d   *daemon.Daemon
	srv *api.Server
	hup chan os.Signal
}

// watchReloads catches SIGHUP at once, so that a signal sent as soon as the daemon says it is up
// reloads instead of killing it; run handles the signals.
func watchReloads(d *daemon.Daemon, srv *api.Server) *reloads {
	r := &reloads{d: d, srv: srv, hup: make(chan os.Signal, 1)}
	signal.Notify(r.hup, syscall.SIGHUP)
	return r
}

func (r *reloads) stop() { signal.Stop(r.hup) }

func (r *reloads) reload(ctx context.Context, source string) {
	res, err := r.d.Reload(ctx, source)
	r.srv.AuditReload(ctx, res, err)
}

// run reloads on SIGHUP, and on a changed file checked every watch (0: never), until ctx ends.
func (r *reloads) run(ctx context.Context, watch time.Duration) {
	go r.d.WatchConfig(ctx, watch, func(ctx context.Context) { r.reload(ctx, "file-watch") })
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.hup:
			r.reload(ctx, "signal")
		}
	}
}
