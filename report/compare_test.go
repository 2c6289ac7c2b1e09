package report

import (
	"testing"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/runbooks"
)

func TestCompareStatuses(t *testing.T) {
	mk := func(id string, figs ...experiments.Figure) *experiments.Result {
		return &experiments.Result{RunID: id, Runbook: "r", RunbookDigest: "sha256:" + id, Experiments: []experiments.ExperimentResult{{Name: "x", Figures: figs}}}
	}
	f := func(key string, v *float64, unc float64, higher bool) experiments.Figure {
		return experiments.Figure{Key: key, Metric: key, Unit: "s", Value: v, Uncertainty: unc, HigherIsBetter: higher}
	}
	base := mk("base",
		f("a/ok", ptr(10.0), 0, false),        // 11.9: +19% within 20%
		f("a/regressed", ptr(10.0), 0, false), // 12.1: +21%
		f("a/noise", ptr(1.0), 0.25, false),   // 1.4: +40%, but within ±0.25 + ±0.25
		f("a/unreached", ptr(5.0), 0, false),  // nil now
		f("a/missing", ptr(5.0), 0, false),    // not in this run
		f("a/better", ptr(0.5), 0, true),      // a ratio that dropped: worse
		f("a/abs", ptr(10.0), 0, false),       // per-figure tolerance 5s: 14.0 is fine
		// Nothing breached this time, so nothing was detected: no regression.
		experiments.Figure{Key: "engine/experiment/timeToDetect", Metric: "timeToDetect", Unit: "s", Value: ptr(0.5)},
	)
	cur := mk("cur",
		f("a/ok", ptr(11.9), 0, false),
		f("a/regressed", ptr(12.1), 0, false),
		f("a/noise", ptr(1.4), 0.25, false),
		f("a/unreached", nil, 0, false),
		f("a/better", ptr(0.3), 0, true),
		f("a/abs", ptr(14.0), 0, false),
		f("a/new", ptr(1.0), 0, false),
		experiments.Figure{Key: "engine/experiment/timeToDetect", Metric: "timeToDetect", Unit: "s", Note: "nothing breached"},
	)
	c := Compare(base, cur, &runbooks.Baseline{Figures: map[string]string{"a/abs": "5s"}})
	want := map[string]string{
		"a/ok": "ok", "a/regressed": "regressed", "a/noise": "ok", "a/unreached": "unreached",
		"a/missing": "missing", "a/better": "regressed", "a/abs": "ok", "a/new": "new",
		"engine/experiment/timeToDetect": "ok",
	}
	got := map[string]string{}
	for _, d := range c.Experiments[0].Figures {
		got[d.Key] = d.Status
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s (%+v)", k, got[k], w, c.Delta("x", k))
		}
	}
	if len(got) != len(want) {
		t.Errorf("compared %v", got)
	}
	if !c.DigestChanged || len(c.Warnings) != 1 {
		t.Errorf("digest changed %v, warnings %q", c.DigestChanged, c.Warnings)
	}
	if d := c.Delta("x", "a/regressed"); d.Detail != "12.10s, baseline 10.00s (+2.10s, +21%) exceeds tolerance 20%" {
		t.Errorf("detail %q", d.Detail)
	}
	res := mk("cur2")
	res.Verdict = experiments.Passed
	res.Experiments[0].Verdict = experiments.Passed
	ApplyComparison(res, c)
	if res.Verdict != experiments.Failed || res.ExitCode != 1 || res.Experiments[0].Verdict != experiments.Failed {
		t.Errorf("after a regression: run %s (exit %d), experiment %s", res.Verdict, res.ExitCode, res.Experiments[0].Verdict)
	}
}
