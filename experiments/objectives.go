package experiments

import (
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// objectiveHorizon is the longest time after the last revert an objective can be met in.
func objectiveHorizon(o *runbooks.Objectives) time.Duration {
	if o == nil {
		return 0
	}
	var d time.Duration
	if o.Breakers != nil {
		d = max(d, o.Breakers.ClosedWithin.D())
	}
	if o.Autoscaling != nil {
		d = max(d, o.Autoscaling.BaselineWithin.D())
	}
	if o.Workloads != nil {
		d = max(d, o.Workloads.ReadyWithin.D())
	}
	return d
}
