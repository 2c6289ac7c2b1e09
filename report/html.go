package report

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// The page's only style and script, inlined and allowed by hash in the Content-Security-Policy:
// the report opens from a file, an artifact store or a mail attachment, offline, and can fetch
// nothing. The charts are SVG drawn here; the script adds zoom and the hover read-out only, so
// the page reads and prints without it.
var (
	//go:embed assets/report.css
	reportCSS string
	//go:embed assets/report.js
	reportJS string
)

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// CSP is the page's Content-Security-Policy: its one style and one script, by hash; nothing else.
func CSP() string {
	return "default-src 'none'; style-src " + cspHash(reportCSS) + "; script-src " + cspHash(reportJS) + "; img-src 'none'; base-uri 'none'; form-action 'none'"
}

// HTML writes one self-contained page for one or more runs.
func HTML(w io.Writer, results ...*experiments.Result) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	p := &page{w: bw}
	title := "faultline report"
	if len(results) == 1 {
		title = fmt.Sprintf("faultline: %s %s (%s)", results[0].Runbook, results[0].Verdict, results[0].RunID)
	}
	p.printf(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="%s">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="faultline">
<title>%s</title>
<style>%s</style>
</head><body>
`, CSP(), esc(title), reportCSS)
	for i, res := range results {
		p.run(res, fmt.Sprintf("r%d", i))
	}
	p.printf(`<div id="tip" class="tip" hidden></div>
<footer>Drag across a chart to zoom the experiment's time axis; double-click to reset. Hover for values. Made by faultline from run result documents; it needs no network.</footer>
<script>%s</script>
</body></html>
`, reportJS)
	if p.err != nil {
		return p.err
	}
	return bw.Flush()
}

type page struct {
	w   *bufio.Writer
	err error
}

func (p *page) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *page) str(s string) {
	if p.err == nil {
		_, p.err = p.w.WriteString(s)
	}
}

func esc(s string) string { return html.EscapeString(s) }

func (p *page) run(res *experiments.Result, id string) {
	p.printf(`<header class="run v-%s"><h1>%s <span class="verdict">%s</span></h1>`, esc(string(res.Verdict)), esc(res.Runbook), esc(string(res.Verdict)))
	if res.Reason != "" {
		p.printf(`<p class="reason">%s</p>`, esc(res.Reason))
	}
	p.str(`<dl class="facts">`)
	fact := func(k, v string) {
		if v != "" {
			p.printf(`<div><dt>%s</dt><dd>%s</dd></div>`, esc(k), esc(v))
		}
	}
	fact("run", res.RunID)
	fact("environment", res.Environment)
	if id := res.Identity; id != nil {
		fact("type", id.Type)
		fact("host", id.Host)
		fact("cluster", strings.TrimSpace(id.ClusterID+" "+id.Server))
	}
	fact("started", res.StartedAt.UTC().Format(time.RFC3339))
	fact("duration", res.EndedAt.Sub(res.StartedAt).Round(time.Millisecond).String())
	fact("exit code", strconv.Itoa(res.ExitCode))
	fact("faultline", res.FaultlineVersion)
	fact("runbook digest", short(res.RunbookDigest))
	if res.Baseline != nil {
		fact("baseline run", res.Baseline.BaselineRunID)
	}
	p.str(`</dl>`)
	if h := res.Halt; h != nil {
		lat := ""
		if h.LastRevertedAt != nil {
			lat = ", every fault reverted " + h.LastRevertedAt.Sub(h.At).Round(time.Millisecond).String() + " later"
		}
		p.printf(`<p class="halt">Halted at %s by %s: %s%s</p>`, esc(clock(h.At)), esc(h.Source), esc(h.Reason), esc(lat))
	}
	p.baselineSummary(res.Baseline)
	p.str(`<table class="summary"><thead><tr><th>experiment</th><th>verdict</th><th>reason</th></tr></thead><tbody>`)
	ran := map[string]bool{}
	for _, x := range res.Experiments {
		ran[x.Name] = true
		p.printf(`<tr class="v-%s"><td><a href="#%s-%s">%s</a></td><td>%s</td><td>%s</td></tr>`, esc(string(x.Verdict)), id, esc(anchor(x.Name)), esc(x.Name), esc(string(x.Verdict)), esc(x.Reason))
	}
	for _, n := range res.ExperimentNames {
		if !ran[n] {
			p.printf(`<tr class="v-skipped"><td>%s</td><td>not reached</td><td>the run ended before it</td></tr>`, esc(n))
		}
	}
	p.str(`</tbody></table></header>`)
	for i := range res.Experiments {
		p.experiment(res, &res.Experiments[i], fmt.Sprintf("%s-x%d", id, i), id)
	}
}

func anchor(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

func (p *page) baselineSummary(c *experiments.BaselineComparison) {
	if c == nil {
		return
	}
	fails := c.Failures()
	if len(fails) == 0 {
		p.printf(`<p class="baseline ok">Compared with baseline run %s: no recovery figure got worse beyond its tolerance.</p>`, esc(c.BaselineRunID))
	} else {
		p.printf(`<div class="baseline bad"><p>Compared with baseline run %s, %d figure(s) got worse:</p><ul>`, esc(c.BaselineRunID), len(fails))
		for _, f := range fails {
			p.printf(`<li><code>%s</code> %s: %s (tolerance %s)</li>`, esc(f.Key), esc(f.Status), esc(f.Detail), esc(f.Tolerance))
		}
		p.str(`</ul></div>`)
	}
	for _, w := range c.Warnings {
		p.printf(`<p class="warning">%s</p>`, esc(w))
	}
}

func (p *page) experiment(res *experiments.Result, x *experiments.ExperimentResult, id, runID string) {
	charts, a, windows := experimentCharts(res, x, id)
	p.printf(`<section class="experiment v-%s" id="%s-%s" data-data="%s-data"><h2>%s <span class="verdict">%s</span></h2>`,
		esc(string(x.Verdict)), runID, esc(anchor(x.Name)), id, esc(x.Name), esc(string(x.Verdict)))
	if x.Reason != "" {
		p.printf(`<p class="reason">%s</p>`, esc(x.Reason))
	}
	p.printf(`<div class="controls"><button type="button" class="reset">Reset zoom</button> <span class="range">%s – %s UTC (%s)</span></div>`,
		esc(clock(a.t0)), esc(clock(a.t0.Add(a.span))), esc(a.span.Round(time.Millisecond).String()))
	data := struct {
		T0     int64                `json:"t0"`
		Span   int64                `json:"span"`
		Charts map[string]hoverData `json:"charts"`
	}{T0: a.t0.UnixMilli(), Span: a.span.Milliseconds(), Charts: map[string]hoverData{}}
	for i := range charts {
		p.chart(&charts[i], windows)
		data.Charts[charts[i].ID] = charts[i].Hover
	}
	p.axis(a)
	p.figures(res, x)
	b, err := json.Marshal(data)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("encode chart data: %w", err)
	}
	// JSON inside a script element: "</" must not appear (json.Marshal already escapes < > &).
	p.printf(`<script type="application/json" id="%s-data">%s</script></section>`, id, b)
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func (p *page) chart(c *chart, windows []span) {
	nSeries := len(c.Lines)
	if c.Kind == "state" {
		nSeries = 1
	}
	p.printf(`<div class="chart-wrap"><div class="chart-head"><h3>%s</h3> <span class="sub">%s</span><span class="legend">`, esc(c.Title), esc(c.Sub))
	for _, l := range c.Legend {
		p.printf(`<span class="key %s">%s</span>`, esc(l.Class), esc(l.Label))
	}
	totalW := marginLeft + plotWidth + marginRight
	p.printf(`</span></div><svg class="chart" id="%s" data-kind="%s" data-series="%d" data-marks="%d" viewBox="0 0 %s %s" role="img" aria-label="%s">`,
		c.ID, c.Kind, nSeries, len(c.Marks), f1(totalW), f1(c.H+4), esc(c.Title))
	if c.Kind == "series" || c.Kind == "guardrail" {
		p.printf(`<text class="ytick" x="%s" y="10" text-anchor="end">%s</text><text class="ytick" x="%s" y="%s" text-anchor="end">%s</text>`,
			f1(marginLeft-6), esc(axisValue(c.YMax, c.Unit)), f1(marginLeft-6), f1(c.H+2), esc(axisValue(c.YMin, c.Unit)))
	}
	p.printf(`<svg class="plot" x="%s" y="2" width="%s" height="%s" viewBox="0 0 %s %s" preserveAspectRatio="none" data-h="%s">`,
		f1(marginLeft), f1(plotWidth), f1(c.H), f1(plotWidth), f1(c.H), f1(c.H))
	p.printf(`<rect class="bg" width="%s" height="%s"/>`, f1(plotWidth), f1(c.H))
	for _, w := range windows {
		p.printf(`<rect class="window" x="%s" y="0" width="%s" height="%s"><title>%s</title></rect>`, f2(w.X), f2(w.W), f1(c.H), esc(w.Label))
	}
	for _, s := range c.Spans {
		p.printf(`<rect class="span %s" x="%s" y="%s" width="%s" height="%s"><title>%s</title></rect>`, s.Class, f2(s.X), f1(s.Y), f2(s.W), f1(s.H), esc(s.Label))
	}
	if c.Threshold != nil {
		y := c.y(*c.Threshold)
		p.printf(`<path class="threshold" d="M0 %sH%s"/>`, f2(y), f1(plotWidth))
	}
	for _, l := range c.Lines {
		p.printf(`<path class="line %s" data-name="%s" d="`, l.Class, esc(l.Name))
		p.path(c, l)
		p.str(`"/>`)
	}
	for _, m := range c.Marks {
		if m.Class == "halt" {
			p.printf(`<path class="mark halt" d="M%s 0V%s"><title>%s</title></path>`, f2(m.X), f1(c.H), esc(m.Label))
			continue
		}
		p.printf(`<path class="mark %s" d="M%s %sh0"><title>%s</title></path>`, m.Class, f2(m.X), f2(m.Y), esc(m.Label))
	}
	p.printf(`<path class="cursor" d="M-10 0V%s"/><rect class="sel" x="0" y="0" width="0" height="%s"/></svg></svg></div>`, f1(c.H), f1(c.H))
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// path writes a line's d attribute; buf reuse keeps a 600,000-point game day quick.
func (p *page) path(c *chart, l line) {
	if p.err != nil {
		return
	}
	buf := make([]byte, 0, 32)
	for i, pt := range l.Pts {
		buf = buf[:0]
		y := c.y(pt.V)
		switch {
		case i == 0:
			buf = append(buf, 'M')
			buf = strconv.AppendFloat(buf, pt.X, 'f', 2, 64)
			buf = append(buf, ' ')
		case l.Step:
			buf = append(buf, 'H')
			buf = strconv.AppendFloat(buf, pt.X, 'f', 2, 64)
			buf = append(buf, 'V')
		default:
			buf = append(buf, 'L')
			buf = strconv.AppendFloat(buf, pt.X, 'f', 2, 64)
			buf = append(buf, ' ')
		}
		buf = strconv.AppendFloat(buf, y, 'f', 2, 64)
		_, p.err = p.w.Write(buf)
	}
	if l.Step && len(l.Pts) > 0 {
		// A step series holds its last value to the end of the experiment.
		p.printf("H%s", f1(plotWidth))
	}
}

func axisValue(v float64, unit string) string {
	if unit == "s" {
		return FormatValue(v, unit)
	}
	return strconv.FormatFloat(round4(v), 'g', 4, 64)
}

// axis is the shared time axis under an experiment's charts; the script redraws it on zoom.
func (p *page) axis(a axis) {
	totalW := marginLeft + plotWidth + marginRight
	p.printf(`<svg class="axis" viewBox="0 0 %s 30" data-t0="%d" data-span="%d">`, f1(totalW), a.t0.UnixMilli(), a.span.Milliseconds())
	step := niceStep(a.span.Milliseconds())
	for t := int64(0); t <= a.span.Milliseconds(); t += step {
		x := marginLeft + float64(t)/float64(max(a.span.Milliseconds(), 1))*plotWidth
		p.printf(`<path class="tick" d="M%s 0v5"/><text x="%s" y="16" text-anchor="middle">%s</text><text class="clock" x="%s" y="27" text-anchor="middle">%s</text>`,
			f2(x), f2(x), esc(relTime(t)), f2(x), esc(a.t0.Add(time.Duration(t)*time.Millisecond).UTC().Format("15:04:05")))
	}
	p.str(`</svg>`)
}

// niceStep picks a tick step (ms) giving about eight ticks; report.js has the same table.
func niceStep(span int64) int64 {
	steps := []int64{100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000}
	for _, s := range steps {
		if span/s <= 8 {
			return s
		}
	}
	return steps[len(steps)-1]
}

func relTime(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d == 0 {
		return "0"
	}
	return "+" + d.String()
}

func (p *page) figures(res *experiments.Result, x *experiments.ExperimentResult) {
	figs := Figures(res, x)
	if len(figs) == 0 && len(x.Objectives) == 0 {
		return
	}
	p.str(`<table class="figures"><thead><tr><th>figure</th><th>subject</th><th>value</th><th>objective</th><th>baseline</th></tr></thead><tbody>`)
	for _, f := range figs {
		cls := ""
		for _, o := range x.Objectives {
			if o.Figure == f.Key && !o.Passed {
				cls = "bad"
			}
		}
		d := res.Baseline.Delta(x.Name, f.Key)
		dcls := ""
		if d != nil && d.Failing() {
			dcls = "bad"
		}
		p.printf(`<tr class="%s"><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td><td class="%s">%s</td></tr>`,
			cls, esc(f.Key), esc(f.Subject), esc(figureText(f)), esc(plain(objectiveText(x, f.Key))), dcls, esc(plain(deltaText(d))))
	}
	for _, o := range x.Objectives {
		if o.Figure != "" {
			continue
		}
		cls := ""
		if !o.Passed {
			cls = "bad"
		}
		p.printf(`<tr class="%s"><td>%s</td><td></td><td>%s</td><td>%s</td><td></td></tr>`, cls, esc(o.Name), esc(o.Value), esc(plain(objText(o))))
	}
	p.str(`</tbody></table>`)
}

// plain swaps the Markdown's emoji for marks every font has: a printed report or a machine
// without an emoji font would show empty boxes.
func plain(s string) string { return strings.NewReplacer("✅", "✓", "❌", "✗").Replace(s) }
