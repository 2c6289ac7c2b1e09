package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/testenv/chromium"
)

// chartInfo is what the test reads back from the DOM of each chart.
type chartInfo struct {
	Kind      string `json:"kind"`
	Title     string `json:"title"`
	Series    int    `json:"series"`
	Marks     int    `json:"marks"`
	Spans     int    `json:"spans"`
	Threshold int    `json:"threshold"`
	AttrMarks int    `json:"attrMarks"`
	Windows   int    `json:"windows"`
}

const readChartsJS = `Array.from(document.querySelectorAll('section.experiment')).map(s => Array.from(s.querySelectorAll('svg.chart')).map(c => ({
  kind: c.dataset.kind,
  title: c.closest('.chart-wrap').querySelector('h3').textContent,
  series: c.querySelectorAll('path.line').length + (c.dataset.kind === 'state' ? 1 : 0),
  marks: c.querySelectorAll('.mark').length,
  spans: c.querySelectorAll('rect.span').length,
  threshold: c.querySelectorAll('path.threshold').length,
  attrMarks: +c.dataset.marks,
  windows: c.querySelectorAll('rect.window').length,
})))`

// want is one chart as the fixture implies it: kind, title, series, marks, state spans, threshold.
type want struct {
	kind, title          string
	series, marks, spans int
	threshold            int
}

func passedCharts() []want {
	return []want{
		{"faults", "Faults", 0, 2, 1, 0},
		{"guardrail", "guardrail checkout-latency", 1, 0, 0, 1},
		{"state", "breaker be_app/srv2", 1, 0, 6, 0},
		{"series", "hpa shop/web", 2, 0, 0, 0},
		{"state", "deployment shop/web", 1, 2, 5, 0},
	}
}

func TestHTMLInChromium(t *testing.T) {
	halted := passedCharts()
	halted[0].marks = 2 // one kill, the halt
	halted[1].marks = 9 // 8 failed evaluations (2s at 250ms), the halt
	halted[2].spans = 2 // closed, then open to the end
	for _, tc := range []struct {
		name  string
		res   *experiments.Result
		wants [][]want
	}{
		{"passed", passedResult(), [][]want{passedCharts(), passedCharts()}},
		{"halted", haltedResult(), [][]want{passedCharts(), halted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := chromium.Start(t)
			path := filepath.Join(t.TempDir(), "report.html")
			var buf bytes.Buffer
			if err := HTML(&buf, tc.res); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Open("file://"+path, `document.body.dataset.ready === '1'`, 60*time.Second); err != nil {
				t.Fatal(err)
			}
			var got [][]chartInfo
			if err := b.Eval(readChartsJS, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.wants) {
				t.Fatalf("%d experiment sections, want %d", len(got), len(tc.wants))
			}
			for i, wantCharts := range tc.wants {
				if len(got[i]) != len(wantCharts) {
					t.Fatalf("experiment %d: %d charts, want %d: %+v", i, len(got[i]), len(wantCharts), got[i])
				}
				for j, w := range wantCharts {
					g := got[i][j]
					if g.Kind != w.kind || g.Title != w.title || g.Series != w.series || g.Marks != w.marks || g.Spans != w.spans || g.Threshold != w.threshold {
						t.Errorf("experiment %d chart %d = %+v, want %+v", i, j, g, w)
					}
					if g.AttrMarks != g.Marks || g.Windows != 1 {
						t.Errorf("experiment %d chart %d: data-marks %d for %d marks, %d fault windows (want 1)", i, j, g.AttrMarks, g.Marks, g.Windows)
					}
				}
			}
			if err := b.Screenshot(filepath.Join(t.ArtifactDir(), "report-"+tc.name+".png")); err != nil {
				t.Fatal(err)
			}
			// Hover: the read-out shows the guardrail's value; drag: the axis zooms.
			var box []float64
			if err := b.Eval(`(() => { const r = document.querySelectorAll('section.experiment')[1].querySelectorAll('svg.plot')[1].getBoundingClientRect(); window.scrollTo(0, 0); return [r.left, r.top, r.width, r.height]; })()`, &box); err != nil {
				t.Fatal(err)
			}
			if err := b.Eval(`(() => { const r = document.querySelectorAll('section.experiment')[1].querySelectorAll('svg.plot')[1]; r.scrollIntoView({block: 'center'}); const q = r.getBoundingClientRect(); return [q.left, q.top, q.width, q.height]; })()`, &box); err != nil {
				t.Fatal(err)
			}
			x0, y := box[0]+box[2]*0.4, box[1]+box[3]/2
			x1 := box[0] + box[2]*0.6
			if err := b.Run(
				chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x0, y),
				chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x0, y, chromedp.ButtonType(input.MouseButtonLeft)),
				chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y, chromedp.ButtonType(input.MouseButtonLeft)),
				chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x1, y, chromedp.ButtonType(input.MouseButtonLeft)),
				chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (x0+x1)/2, y),
			); err != nil {
				t.Fatal(err)
			}
			var state struct {
				Tip     string `json:"tip"`
				Hidden  bool   `json:"hidden"`
				ViewBox string `json:"viewBox"`
				Other   string `json:"other"`
				Ticks   int    `json:"ticks"`
			}
			if err := b.Eval(`(() => { const s = document.querySelectorAll('section.experiment')[1]; const p = s.querySelectorAll('svg.plot'); const tip = document.getElementById('tip');
				return {tip: tip.textContent, hidden: tip.hidden, viewBox: p[1].getAttribute('viewBox'), other: p[0].getAttribute('viewBox'), ticks: s.querySelectorAll('svg.axis text').length}; })()`, &state); err != nil {
				t.Fatal(err)
			}
			if state.Hidden || !regexp.MustCompile(`value: \d+ms`).MatchString(state.Tip) {
				t.Errorf("hover read-out %q (hidden %v), want the guardrail's value", state.Tip, state.Hidden)
			}
			var vx, vw, ox, ow float64
			_, err1 := fmt.Sscanf(state.ViewBox, "%g 0 %g", &vx, &vw)
			_, err2 := fmt.Sscanf(state.Other, "%g 0 %g", &ox, &ow)
			if err1 != nil || err2 != nil || vx < 350 || vx > 450 || vw < 150 || vw > 250 || ox != vx || ow != vw {
				t.Errorf("after a drag over 40%%–60%%: viewBox %q (faults lane %q), want about \"400 0 200 …\" on every lane", state.ViewBox, state.Other)
			}
			if state.Ticks < 4 {
				t.Errorf("zoomed axis has %d labels", state.Ticks)
			}
			problems, requests := b.Seen()
			if len(problems) > 0 {
				t.Errorf("console problems: %q", problems)
			}
			for _, r := range requests {
				if r != "file://"+path {
					t.Errorf("the page made a request: %s", r)
				}
			}
			shot := filepath.Join(t.ArtifactDir(), "report-"+tc.name+"-zoomed.png")
			if err := b.Screenshot(shot); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", shot)
		})
	}
}

func TestHTMLSelfContained(t *testing.T) {
	var buf bytes.Buffer
	if err := HTML(&buf, haltedResult()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-`) {
		t.Error("no strict CSP meta tag")
	}
	// The fixture's own text names URLs (the guardrail's, the API server's); nothing else may.
	out = strings.ReplaceAll(out, "GET http://127.0.0.1:8080/checkout", "")
	out = strings.ReplaceAll(out, "https://127.0.0.1:6443", "")
	out = strings.ReplaceAll(out, "'http://www.w3.org/2000/svg'", "") // the script's SVG namespace, not a fetch
	for _, bad := range []string{"<link", " src=", "http://", "https://", "@import", "url(", "<iframe", "<img"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
}

// Names come from runbooks and recorders: markup in them is text, in the page and in its data.
func TestHTMLEscapesNames(t *testing.T) {
	res := haltedResult()
	evil := `<img src=x onerror=alert(1)></script><script>alert(2)</script>`
	res.Runbook = evil
	x := &res.Experiments[1]
	x.Name, x.Reason = evil, evil
	x.Guardrails[0].Name = evil
	x.Recordings[0].Timelines[0].States[1].State = evil
	x.Recordings[1].Timelines[0].Series[0].Name = evil
	var buf bytes.Buffer
	if err := HTML(&buf, res); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "<script"); n != 3 { // two data blocks and the page's script
		t.Errorf("%d <script elements, want 3 (two experiments' data and the page's own)", n)
	}
	if strings.Contains(buf.String(), "<img") {
		t.Error("a name's markup reached the page")
	}
}
