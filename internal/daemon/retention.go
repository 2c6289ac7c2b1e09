package daemon

import (
	"context"
	"time"
)

// Pruner deletes old claims of scheduled starts; ConfigMapClaimer implements it.
type Pruner interface {
	Prune(ctx context.Context, age time.Duration) (int, error)
}

// prune applies the ledger retention hourly while this replica leads (and once at once): reverted
// entries and claims older than ledger.retention are deleted, so the namespace does not fill up
// with ConfigMaps. Open entries are never deleted. Claims are kept two days at least: the
// per-day cap counts them.
func (d *Daemon) prune(ctx context.Context) {
	age := d.o.Config.Ledger.Retention.D()
	if age <= 0 {
		return
	}
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if n, err := d.o.Engine.Ledger.Prune(ctx, age); err != nil {
			d.log.Error("ledger retention", "err", err)
		} else if n > 0 {
			d.log.Info("ledger retention deleted reverted entries", "entries", n, "older_than", age)
		}
		if p, ok := d.o.Claimer.(Pruner); ok {
			if n, err := p.Prune(ctx, max(age, 48*time.Hour)); err != nil {
				d.log.Error("claim retention", "err", err)
			} else if n > 0 {
				d.log.Info("claim retention deleted old claims", "claims", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
