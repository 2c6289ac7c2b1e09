package promstore

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// Target is one /metrics endpoint, labelled job and instance the way Prometheus labels it.
type Target struct {
	Job  string
	Addr string // host:port; scraped at http://Addr/metrics
}

// scrapeLoop scrapes one target every interval until ctx ends, then marks its series stale: a
// target that is no longer scraped must not keep answering queries for the lookback delta.
func (s *Server) scrapeLoop(ctx context.Context, tg Target) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	var last map[uint64]labels.Labels
	for {
		last = s.scrapeOnce(ctx, tg, last)
		select {
		case <-ctx.Done():
			s.markStale(time.Now().UnixMilli(), last, nil)
			return
		case <-tick.C:
		}
	}
}

// scrapeOnce appends one scrape's samples at the scrape's start time, with up and
// scrape_duration_seconds, and stale markers for the series of the previous scrape that are gone
// (all of them when the scrape failed), as Prometheus does. It returns the series it appended.
func (s *Server) scrapeOnce(ctx context.Context, tg Target, prev map[uint64]labels.Labels) map[uint64]labels.Labels {
	start := time.Now()
	ts := start.UnixMilli()
	fams, err := s.fetch(ctx, tg)
	cur := map[uint64]labels.Labels{}
	if err == nil {
		for _, mf := range fams {
			for _, fs := range flatten(mf) {
				ls := targetLabels(fs.lset, tg)
				s.store.Append(ls, ts, fs.v)
				cur[ls.Hash()] = ls
			}
		}
	} else if ctx.Err() == nil {
		s.log.Debug("scrape failed", "job", tg.Job, "instance", tg.Addr, "err", err)
	}
	up := 0.0
	if err == nil {
		up = 1
	}
	meta := func(name string) labels.Labels {
		return labels.FromStrings(model.MetricNameLabel, name, "instance", tg.Addr, "job", tg.Job)
	}
	s.store.Append(meta("up"), ts, up)
	s.store.Append(meta("scrape_duration_seconds"), ts, time.Since(start).Seconds())
	s.markStale(ts, prev, cur)
	return cur
}

// markStale appends a stale marker to every series of prev that is not in cur.
func (s *Server) markStale(ts int64, prev, cur map[uint64]labels.Labels) {
	stale := math.Float64frombits(value.StaleNaN)
	for h, ls := range prev {
		if _, ok := cur[h]; !ok {
			s.store.Append(ls, ts, stale)
		}
	}
}

func (s *Server) fetch(ctx context.Context, tg Target) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, s.interval)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tg.Addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: HTTP %d", tg.Addr, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: parse metrics: %w", tg.Addr, err)
	}
	return fams, nil
}

// targetLabels adds job and instance; a scraped job or instance label is kept as exported_job or
// exported_instance (Prometheus's honor_labels: false).
func targetLabels(ls labels.Labels, tg Target) labels.Labels {
	b := labels.NewBuilder(ls)
	for _, n := range []string{"job", "instance"} {
		if v := ls.Get(n); v != "" {
			b.Set("exported_"+n, v)
		}
	}
	b.Set("job", tg.Job)
	b.Set("instance", tg.Addr)
	return b.Labels()
}

type flatSample struct {
	lset labels.Labels
	v    float64
}

// flatten turns one metric family into the series Prometheus stores for it: counters, gauges and
// untyped as they are; a classic histogram as _bucket{le} (cumulative, with +Inf), _sum and _count;
// a summary as {quantile}, _sum and _count.
func flatten(mf *dto.MetricFamily) []flatSample {
	name := mf.GetName()
	var out []flatSample
	for _, m := range mf.GetMetric() {
		add := func(metric string, v float64, extra ...string) {
			b := labels.NewBuilder(labels.EmptyLabels())
			for _, lp := range m.GetLabel() {
				b.Set(lp.GetName(), lp.GetValue())
			}
			for i := 0; i+1 < len(extra); i += 2 {
				b.Set(extra[i], extra[i+1])
			}
			b.Set(model.MetricNameLabel, metric)
			out = append(out, flatSample{b.Labels(), v})
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			add(name, m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			add(name, m.GetGauge().GetValue())
		case dto.MetricType_UNTYPED:
			add(name, m.GetUntyped().GetValue())
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			inf := false
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), +1) {
					inf = true
				}
				add(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatLe(b.GetUpperBound()))
			}
			if !inf {
				add(name+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
			}
			add(name+"_sum", h.GetSampleSum())
			add(name+"_count", float64(h.GetSampleCount()))
		case dto.MetricType_SUMMARY:
			sm := m.GetSummary()
			for _, q := range sm.GetQuantile() {
				add(name, q.GetValue(), "quantile", formatLe(q.GetQuantile()))
			}
			add(name+"_sum", sm.GetSampleSum())
			add(name+"_count", float64(sm.GetSampleCount()))
		}
	}
	return out
}

// formatLe writes a bucket bound or quantile as Prometheus 3 normalizes it on ingestion (0.005,
// 1.0, +Inf), whatever the exporter wrote.
func formatLe(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return labels.FormatOpenMetricsFloat(f)
}
