package promstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Error types and HTTP statuses exactly as the Prometheus HTTP API writes them, so that clients
// (faultline's among them) tell a bad query from an overloaded server the same way.
const (
	errBadData   = "bad_data"
	errExec      = "execution"
	errCanceled  = "canceled"
	errTimeout   = "timeout"
	errInternal  = "internal"
	maxPoints    = 11000
	maxWarnings  = 10
	maxInfoNotes = 10
)

var errStatus = map[string]int{errBadData: http.StatusBadRequest, errExec: http.StatusUnprocessableEntity,
	errCanceled: http.StatusServiceUnavailable, errTimeout: http.StatusServiceUnavailable, errInternal: http.StatusInternalServerError}

// Handler serves GET and POST /api/v1/query and /api/v1/query_range, /api/v1/labels,
// /api/v1/label/NAME/values, /api/v1/targets, /-/healthy and /-/ready.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", s.query)
	mux.HandleFunc("/api/v1/query_range", s.queryRange)
	mux.HandleFunc("/api/v1/labels", s.labelNames)
	mux.HandleFunc("/api/v1/label/{name}/values", s.labelValues)
	mux.HandleFunc("/api/v1/targets", s.targets)
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("Prometheus is Ready.\n")) }
	mux.HandleFunc("/-/healthy", ok)
	mux.HandleFunc("/-/ready", ok)
	return mux
}

type apiError struct {
	typ string
	err error
}

func badData(format string, a ...any) *apiError {
	return &apiError{errBadData, fmt.Errorf(format, a...)}
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	ts, err := parseTimeParam(r, "time", time.Now())
	if err != nil {
		writeError(w, badData("%w", err))
		return
	}
	ctx, cancel, aerr := s.queryContext(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer cancel()
	q, err := s.engine.NewInstantQuery(ctx, s.store, nil, r.FormValue("query"), ts)
	if err != nil {
		writeError(w, badData("invalid parameter \"query\": %w", err))
		return
	}
	s.exec(ctx, w, q)
}

func (s *Server) queryRange(w http.ResponseWriter, r *http.Request) {
	if !form(w, r) {
		return
	}
	start, err := parseTimeParam(r, "start", time.Time{})
	if err == nil && r.FormValue("start") == "" {
		err = errors.New("invalid parameter \"start\": cannot parse \"\" to a valid timestamp")
	}
	if err != nil {
		writeError(w, badData("%w", err))
		return
	}
	end, err := parseTimeParam(r, "end", time.Time{})
	if err == nil && r.FormValue("end") == "" {
		err = errors.New("invalid parameter \"end\": cannot parse \"\" to a valid timestamp")
	}
	if err != nil {
		writeError(w, badData("%w", err))
		return
	}
	if end.Before(start) {
		writeError(w, badData("invalid parameter \"end\": end timestamp must not be before start time"))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		writeError(w, badData("invalid parameter \"step\": %w", err))
		return
	}
	if step <= 0 {
		writeError(w, badData("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"))
		return
	}
	if end.Sub(start)/step > maxPoints {
		writeError(w, badData("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"))
		return
	}
	ctx, cancel, aerr := s.queryContext(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer cancel()
	q, err := s.engine.NewRangeQuery(ctx, s.store, nil, r.FormValue("query"), start, end, step)
	if err != nil {
		writeError(w, badData("invalid parameter \"query\": %w", err))
		return
	}
	s.exec(ctx, w, q)
}

// queryContext applies the request's timeout parameter (the engine's own timeout still holds).
func (s *Server) queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	if v := r.FormValue("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, nil, badData("invalid parameter \"timeout\": %w", err)
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithCancel(r.Context())
	return ctx, cancel, nil
}

func (s *Server) exec(ctx context.Context, w http.ResponseWriter, q promql.Query) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		writeError(w, execError(res.Err))
		return
	}
	warnings, infos := res.Warnings.AsStrings(q.Statement().String(), maxWarnings, maxInfoNotes)
	data, err := encodeValue(res.Value)
	if err != nil {
		writeError(w, &apiError{errInternal, err})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": data, "warnings": omitEmpty(warnings), "infos": omitEmpty(infos)})
}

func omitEmpty(s []string) any {
	if len(s) == 0 {
		return nil
	}
	return s
}

func execError(err error) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		storage  promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.As(err, &storage):
		return &apiError{errInternal, err}
	}
	return &apiError{errExec, err}
}

// encodeValue writes a promql result as the API's data object: resultType and result.
func encodeValue(v parser.Value) (map[string]any, error) {
	switch v := v.(type) {
	case promql.Vector:
		out := make([]map[string]any, 0, len(v))
		for _, s := range v {
			if s.H != nil {
				return nil, errors.New("native histograms are not supported by the embedded store")
			}
			out = append(out, map[string]any{"metric": metric(s.Metric), "value": point(s.T, s.F)})
		}
		return map[string]any{"resultType": "vector", "result": out}, nil
	case promql.Matrix:
		out := make([]map[string]any, 0, len(v))
		for _, s := range v {
			pts := make([]json.RawMessage, 0, len(s.Floats))
			for _, p := range s.Floats {
				pts = append(pts, point(p.T, p.F))
			}
			out = append(out, map[string]any{"metric": metric(s.Metric), "values": pts})
		}
		return map[string]any{"resultType": "matrix", "result": out}, nil
	case promql.Scalar:
		return map[string]any{"resultType": "scalar", "result": point(v.T, v.V)}, nil
	case promql.String:
		ts, _ := json.Marshal(v.V)
		return map[string]any{"resultType": "string", "result": json.RawMessage(fmt.Sprintf("[%s,%s]", formatTime(v.T), ts))}, nil
	}
	return nil, fmt.Errorf("unexpected result type %T", v)
}

func metric(ls labels.Labels) map[string]string {
	m := make(map[string]string, ls.Len())
	ls.Range(func(l labels.Label) { m[l.Name] = l.Value })
	return m
}

// point is [unix seconds with ms, "value"], the value as Prometheus formats it (NaN, +Inf, -Inf).
func point(t int64, f float64) json.RawMessage {
	return json.RawMessage("[" + formatTime(t) + `,"` + formatFloat(f) + `"]`)
}

func formatTime(t int64) string { return strconv.FormatFloat(float64(t)/1000, 'f', -1, 64) }

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func (s *Server) labelNames(w http.ResponseWriter, r *http.Request) {
	s.labelAPI(w, r, "")
}

func (s *Server) labelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !model.UTF8Validation.IsValidLabelName(name) {
		writeError(w, badData("invalid label name: %q", name))
		return
	}
	s.labelAPI(w, r, name)
}

// labelAPI answers label names (name empty) or one label's values, over the whole retention.
func (s *Server) labelAPI(w http.ResponseWriter, r *http.Request, name string) {
	if !form(w, r) {
		return
	}
	var ms []*labels.Matcher
	for _, sel := range r.Form["match[]"] {
		m, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
		if err != nil {
			writeError(w, badData("invalid parameter \"match[]\": %w", err))
			return
		}
		ms = append(ms, m...)
	}
	q, _ := s.store.Querier(math.MinInt64, math.MaxInt64)
	var out []string
	if name == "" {
		out, _, _ = q.LabelNames(r.Context(), nil, ms...)
	} else {
		out, _, _ = q.LabelValues(r.Context(), name, nil, ms...)
	}
	if out == nil {
		out = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": out})
}

func (s *Server) targets(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	active := make([]map[string]any, 0, len(s.loops))
	for tg := range s.loops {
		active = append(active, map[string]any{
			"labels":     map[string]string{"job": tg.Job, "instance": tg.Addr},
			"scrapePool": tg.Job, "scrapeUrl": "http://" + tg.Addr + "/metrics",
			"scrapeInterval": model.Duration(s.interval).String(),
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": map[string]any{"activeTargets": active, "droppedTargets": []any{}}})
}

// form parses GET query parameters and POST form bodies, as Prometheus accepts both.
func form(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, &apiError{errBadData, fmt.Errorf("method %s not allowed", r.Method)})
		return false
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, badData("error parsing form values: %w", err))
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, errStatus[e.typ], map[string]any{"status": "error", "errorType": e.typ, "error": e.err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v map[string]any) {
	for k, x := range v {
		if x == nil {
			delete(v, k)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		sec, frac := math.Modf(f)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid parameter %q: cannot parse %q to a valid timestamp", name, v)
}

func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}
