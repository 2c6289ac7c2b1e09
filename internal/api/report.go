package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/report"
)

// runReport answers GET /api/v1/runs/{id}/report?format=html|junit|markdown|text: the report of a
// finished run in history, made from its stored result document (html by default).
func (s *Server) runReport(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "html"
	}
	if err := report.CheckFormat(format); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error()})
		return
	}
	rec, err := s.hist.Get(r.Context(), id)
	switch {
	case errors.Is(err, history.ErrNotFound):
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("run %q is not in history (a running run has no report yet)", id)})
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "read run for report", "run", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: err.Error()})
		return
	case rec.Result == nil:
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("run %q was stored without a result document", id)})
		return
	}
	var buf bytes.Buffer
	if err := report.Write(&buf, format, rec.Result); err != nil {
		s.log.ErrorContext(r.Context(), "write report", "run", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: err.Error()})
		return
	}
	w.Header().Set("Content-Type", report.ContentType(format))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if format == "html" {
		// The same policy as the page's meta tag, plus a sandbox: the page may run its own
		// script and nothing else, and cannot reach the daemon's origin.
		w.Header().Set("Content-Security-Policy", report.CSP()+"; sandbox allow-scripts")
	}
	_, _ = w.Write(buf.Bytes())
}
