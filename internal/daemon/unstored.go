package daemon

import (
	"slices"

	"github.com/faultline-dev/faultline/experiments"
)

// maxUnstored bounds the results kept in memory when history cannot take them.
const maxUnstored = 100

// UnstoredRun is a finished run whose result could not be written to history. The daemon keeps
// it in memory so that the API and `faultline status` can say so instead of the run vanishing.
type UnstoredRun struct {
	RunSummary
	StoreError string              `json:"storeError"`
	Result     *experiments.Result `json:"-"`
}

// UnstoredResults is implemented by the daemon: the results history refused, oldest first. It is
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

func (d *Daemon) keepUnstored(u UnstoredRun) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unstored = append(d.unstored, u)
	if n := len(d.unstored) - maxUnstored; n > 0 {
		d.unstored = slices.Delete(d.unstored, 0, n)
	}
}
