package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
)

const (
	defaultLimit  = 100
	maxLimit      = 1000
	maxBody       = 64 << 10
	maxReasonLen  = 1024
	defaultReason = "halted by operator"
)

func ok(code int, body any) reply { return reply{code: code, body: body} }

// fail answers an error: Control's sentinel errors map to their status codes, anything else
// is a 500.
func fail(err error) reply {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, daemon.ErrNotFound), errors.Is(err, history.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, daemon.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, daemon.ErrForbidden):
		code = http.StatusForbidden
	}
	return failCode(code, err)
}

func failCode(code int, err error) reply {
	return reply{code: code, body: ErrorResponse{Error: err.Error()}, err: err}
}

// bodyError answers a body that could not be read: 413 when too large, else 400.
func bodyError(err error) reply {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return failCode(http.StatusRequestEntityTooLarge, err)
	}
	return failCode(http.StatusBadRequest, err)
}

func badRequest(format string, args ...any) reply {
	return failCode(http.StatusBadRequest, fmt.Errorf(format, args...))
}

func (s *Server) healthz(*http.Request, principal) reply {
	return ok(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(*http.Request, principal) reply {
	if s.control.Ready() {
		return ok(http.StatusOK, ReadyResponse{Ready: true})
	}
	return ok(http.StatusServiceUnavailable, ReadyResponse{Ready: false})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) status(*http.Request, principal) reply {
	return ok(http.StatusOK, StatusResponse{
		Now:            time.Now().UTC(),
		Leader:         s.control.Leader(),
		LeaderIdentity: s.control.LeaderIdentity(),
		Recovery:       s.control.Recovery(),
		Paused:         s.control.Paused(),
		Ready:          s.control.Ready(),
		Schedules:      nonNil(s.control.Schedules()),
		Active:         nonNil(s.control.Active()),
		Unstored:       s.unstored(),
	})
}

func (s *Server) unstored() []daemon.UnstoredRun {
	if u, ok := s.control.(daemon.UnstoredResults); ok {
		return u.Unstored()
	}
	return nil
}

func (s *Server) schedules(*http.Request, principal) reply {
	return ok(http.StatusOK, SchedulesResponse{Schedules: nonNil(s.control.Schedules())})
}

var verdicts = []experiments.Verdict{
	experiments.Passed, experiments.Failed, experiments.Halted, experiments.NotStarted,
	experiments.Refused, experiments.Aborted, experiments.RevertIncomplete, experiments.DryRun,
}

// runsFilter reads GET /api/v1/runs's query: schedule, runbook, verdict, since (RFC 3339 time
// or a duration back from now, e.g. 24h) and limit (finished runs; default 100, at most 1000).
// Unknown parameters are errors, so that a typo does not silently return everything.
func runsFilter(q url.Values, now time.Time) (history.Filter, error) {
	f := history.Filter{Limit: defaultLimit}
	for k, v := range q {
		if len(v) != 1 {
			return f, fmt.Errorf("query parameter %q given %d times", k, len(v))
		}
		val := v[0]
		switch k {
		case "schedule":
			f.Schedule = val
		case "runbook":
			f.Runbook = val
		case "verdict":
			f.Verdict = experiments.Verdict(val)
			if !slices.Contains(verdicts, f.Verdict) {
				return f, fmt.Errorf("verdict %q: want one of %v", val, verdicts)
			}
		case "since":
			if d, err := time.ParseDuration(val); err == nil && d > 0 {
				f.Since = now.Add(-d)
			} else if t, err := time.Parse(time.RFC3339, val); err == nil {
				f.Since = t
			} else {
				return f, fmt.Errorf("since %q: want an RFC 3339 time or a duration such as 24h", val)
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxLimit {
				return f, fmt.Errorf("limit %q: want 1 to %d", val, maxLimit)
			}
			f.Limit = n
		case "offset":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return f, fmt.Errorf("offset %q: want 0 or more", val)
			}
			f.Offset = n
		default:
			return f, fmt.Errorf("unknown query parameter %q (schedule, runbook, verdict, since, limit, offset)", k)
		}
	}
	return f, nil
}

func (s *Server) listRuns(r *http.Request, _ principal) reply {
	f, err := runsFilter(r.URL.Query(), time.Now())
	if err != nil {
		return failCode(http.StatusBadRequest, err)
	}
	finished, err := s.hist.List(r.Context(), f)
	if err != nil {
		return fail(err)
	}
	resp := RunsResponse{Active: []daemon.RunSummary{}, Finished: make([]daemon.RunSummary, 0, len(finished))}
	stored := map[string]bool{}
	for _, h := range finished {
		stored[h.RunID] = true
		if h.EndedAt == nil {
			// Stored at its start: running on some replica (a shared history shows the
			// leader's runs on every replica), or left by a dead one until the leader ends it.
			resp.Active = append(resp.Active, h)
			continue
		}
		resp.Finished = append(resp.Finished, h)
	}
	for _, a := range s.control.Active() {
		// An active run has no verdict yet; one already stored has just finished.
		if stored[a.RunID] || f.Verdict != "" || (f.Schedule != "" && a.Schedule != f.Schedule) ||
			(f.Runbook != "" && a.Runbook != f.Runbook) || a.StartedAt.Before(f.Since) {
			continue
		}
		resp.Active = append(resp.Active, a)
	}
	slices.SortFunc(resp.Active, func(a, b daemon.RunSummary) int { return a.StartedAt.Compare(b.StartedAt) })
	return ok(http.StatusOK, resp)
}

// getRun answers from history once the run is stored there finished, else from the live runs,
// the records history refused, and last a run history has as started only.
func (s *Server) getRun(r *http.Request, _ principal) reply {
	id := r.PathValue("id")
	rec, err := s.hist.Get(r.Context(), id)
	if err == nil && rec.Summary.EndedAt != nil {
		return ok(http.StatusOK, RunResponse{State: RunFinished, Summary: rec.Summary, Result: rec.Result})
	}
	// History unreachable (a database that went away): what this replica holds still answers.
	for _, a := range s.control.Active() {
		if a.RunID == id {
			return ok(http.StatusOK, RunResponse{State: RunRunning, Summary: a})
		}
	}
	for _, u := range s.unstored() {
		if u.RunID == id && u.EndedAt != nil {
			return ok(http.StatusOK, RunResponse{State: RunFinished, Summary: u.RunSummary, Result: u.Result,
				StoreError: "the result could not be stored in history: " + u.StoreError})
		}
	}
	if err == nil {
		return ok(http.StatusOK, RunResponse{State: RunRunning, Summary: rec.Summary})
	}
	if !errors.Is(err, history.ErrNotFound) {
		return fail(err)
	}
	return failCode(http.StatusNotFound, fmt.Errorf("run %q is neither running nor in history", id))
}

// decode reads a JSON body strictly (unknown fields are errors). An empty body is allowed when
// optional.
func decode(r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		if optional {
			return nil
		}
		return errors.New("request body: want a JSON object")
	}
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

func (s *Server) trigger(r *http.Request, who principal) reply {
	var req TriggerRequest
	if err := decode(r, &req, false); err != nil {
		return bodyError(err)
	}
	req.Runbook = strings.TrimSpace(req.Runbook)
	if req.Runbook == "" {
		return badRequest("runbook is required: a schedule name or a runbook path")
	}
	id, err := s.control.Trigger(r.Context(), req.Runbook, who.Name)
	if err != nil {
		rep := fail(fmt.Errorf("trigger %s: %w", req.Runbook, err))
		rep.runbook = req.Runbook
		return rep
	}
	loc := "/api/v1/runs/" + url.PathEscape(id)
	return reply{code: http.StatusAccepted, body: TriggerResponse{RunID: id, Location: loc}, location: loc,
		runID: id, runbook: req.Runbook}
}

func readReason(r *http.Request) (string, error) {
	var req ReasonRequest
	if err := decode(r, &req, true); err != nil {
		return "", err
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if len(req.Reason) > maxReasonLen {
		return "", fmt.Errorf("reason longer than %d bytes", maxReasonLen)
	}
	return req.Reason, nil
}

func (s *Server) haltRun(r *http.Request, who principal) reply {
	id := r.PathValue("id")
	reason, err := readReason(r)
	if err != nil {
		rep := bodyError(err)
		rep.runID = id
		return rep
	}
	if reason == "" {
		reason = defaultReason
	}
	var rep reply
	if err := s.control.Halt(r.Context(), id, reason, who.Name); err != nil {
		rep = fail(fmt.Errorf("halt run %s: %w", id, err))
	} else {
		rep = reply{code: http.StatusOK, body: HaltResponse{Halted: []string{id}}, halted: []string{id}}
	}
	rep.runID, rep.reason = id, reason
	return rep
}

func (s *Server) haltAll(r *http.Request, who principal) reply {
	reason, err := readReason(r)
	if err != nil {
		return bodyError(err)
	}
	if reason == "" {
		reason = defaultReason
	}
	halted, err := s.control.HaltAll(r.Context(), reason, who.Name)
	halted = nonNil(halted)
	if err != nil {
		// Some runs may be halted already (this replica's); the leader's are not confirmed.
		rep := failCode(http.StatusServiceUnavailable, fmt.Errorf("kill switch: %w", err))
		rep.halted, rep.reason = halted, reason
		return rep
	}
	return reply{code: http.StatusOK, body: HaltResponse{Halted: halted}, halted: halted, reason: reason}
}

func (s *Server) pause(r *http.Request, who principal) reply {
	reason, err := readReason(r)
	if err != nil {
		return bodyError(err)
	}
	if err := s.control.Pause(r.Context(), who.Name); err != nil {
		rep := failCode(http.StatusServiceUnavailable, fmt.Errorf("pause: %w", err))
		rep.reason = reason
		return rep
	}
	return reply{code: http.StatusOK, body: PauseResponse{Paused: s.control.Paused()}, reason: reason}
}

func (s *Server) resume(r *http.Request, who principal) reply {
	reason, err := readReason(r)
	if err != nil {
		return bodyError(err)
	}
	if err := s.control.Resume(r.Context(), who.Name); err != nil {
		rep := failCode(http.StatusServiceUnavailable, fmt.Errorf("resume: %w", err))
		rep.reason = reason
		return rep
	}
	return reply{code: http.StatusOK, body: PauseResponse{Paused: s.control.Paused()}, reason: reason}
}
