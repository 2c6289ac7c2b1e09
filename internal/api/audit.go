package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Audit outcomes.
const (
	OutcomeOK     = "ok"     // the call did what it asked
	OutcomeDenied = "denied" // no, a wrong or an insufficient token: nothing was done
	OutcomeFailed = "failed" // authorised, but refused or failed (bad request, conflict, error)
)

// AuditEntry is one line of the audit log: every state-changing call, allowed or not.
type AuditEntry struct {
	Time time.Time `json:"time"`
	// Who is the token's name; empty when the caller did not authenticate.
	Who    string `json:"who"`
	Role   string `json:"role,omitempty"`
	Remote string `json:"remote"`
	Method string `json:"method"`
	// Route is the matched pattern, Path the request's path.
	Route   string   `json:"route"`
	Path    string   `json:"path"`
	RunID   string   `json:"runId,omitempty"`
	Runbook string   `json:"runbook,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Halted  []string `json:"halted,omitempty"` // runs a halt reached
	Code    int      `json:"code"`
	Outcome string   `json:"outcome"`
	Error   string   `json:"error,omitempty"`
	// Detail is what the call changed (a reload's schedules added, removed, changed).
	Detail string `json:"detail,omitempty"`
}

// auditLog appends entries to a JSON-lines file (fsync'd per entry: state changes are rare and
// the record must outlive a crash) and to the slog logger. The file is opened O_APPEND, so
// logrotate's copytruncate works; a rename-style rotation needs a daemon restart.
type auditLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	f    *os.File // nil: slog only
	path string
}

func openAudit(path string, log *slog.Logger) (*auditLog, error) {
	a := &auditLog{log: log, path: path}
	if path == "" {
		return a, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a.f = f
	return a, nil
}

// write records e. The file write comes before the response is sent, so a caller that got an
// answer can find its line. A failure to write is returned (and the entry still goes to slog).
func (a *auditLog) write(ctx context.Context, e AuditEntry) error {
	lvl := slog.LevelInfo
	if e.Outcome != OutcomeOK {
		lvl = slog.LevelWarn
	}
	a.log.LogAttrs(ctx, lvl, "audit", slog.String("who", e.Who), slog.String("role", e.Role),
		slog.String("remote", e.Remote), slog.String("route", e.Route), slog.String("path", e.Path),
		slog.String("runId", e.RunID), slog.String("runbook", e.Runbook), slog.String("reason", e.Reason),
		slog.Any("halted", e.Halted), slog.Int("code", e.Code), slog.String("outcome", e.Outcome),
		slog.String("error", e.Error), slog.String("detail", e.Detail))
	if a.f == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(b); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

func (a *auditLog) close() error {
	if a.f == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("close audit log %s: %w", a.path, err)
	}
	return nil
}
