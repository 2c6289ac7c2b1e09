package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/runbooks"
)

// ReloadErrorResponse is the 400 answer to POST /api/v1/reload when the config or a runbook does
// not validate: the problems with their files and positions. The old config keeps running.
type ReloadErrorResponse struct {
	Error    string                 `json:"error"`
	Problems []*runbooks.FieldError `json:"problems,omitempty"`
}

// reload reads the daemon's config and runbooks again (POST /api/v1/reload).
func (s *Server) reload(r *http.Request, who principal) reply {
	reason, err := readReason(r)
	if err != nil {
		return bodyError(err)
	}
	res, err := s.control.Reload(r.Context(), "api:"+who.Name)
	var rep reply
	switch {
	case errors.Is(err, daemon.ErrInvalid):
		body := ReloadErrorResponse{Error: err.Error()}
		if re, ok := errors.AsType[*daemon.ReloadError](err); ok {
			body.Problems = re.Problems
		}
		rep = reply{code: http.StatusBadRequest, body: body, err: err}
	case err != nil:
		rep = fail(fmt.Errorf("reload: %w", err))
	default:
		rep = reply{code: http.StatusOK, body: res, detail: res.Summary()}
	}
	rep.reason = reason
	return rep
}

// AuditReload writes the audit line of a reload that did not come through the API (SIGHUP, a
// changed file): every reload is in the audit log, whoever asked for it.
func (s *Server) AuditReload(ctx context.Context, res daemon.ReloadResult, err error) {
	e := AuditEntry{Time: time.Now().UTC(), Who: res.Source, Route: "reload", Outcome: OutcomeOK}
	if err != nil {
		e.Outcome, e.Error = OutcomeFailed, err.Error()
	} else {
		e.Detail = res.Summary()
	}
	if werr := s.audit.write(ctx, e); werr != nil {
		s.log.ErrorContext(ctx, "audit log write failed", "err", werr)
	}
}
