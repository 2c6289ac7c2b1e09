package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/internal/auth"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/metrics"
)

// Config configures the API server.
type Config struct {
	// TokenFile holds the bearer tokens (see the package documentation). Without one, every
	// route but /healthz, /readyz (and an open /metrics) answers 401: the API starts and halts
	// fault injection, so it is never open.
	TokenFile string
	// AuditLog is the JSON-lines file every state-changing call is appended to. Empty means the
	// audit records go to the logger only.
	AuditLog string
	// TLSCertFile and TLSKeyFile, both or neither, serve HTTPS. The pair is reloaded when either
	// file changes (cert-manager renewals); a broken pair keeps the last good one.
	TLSCertFile, TLSKeyFile string
	// MetricsAuth requires a token (either role) for GET /metrics; otherwise it is open, like
	// /healthz and /readyz.
	MetricsAuth bool
	// ShutdownTimeout bounds the graceful shutdown when Serve's context ends; 10s when zero.
	ShutdownTimeout time.Duration
}

// History is what the API reads of the history store; *history.Store implements it.
type History interface {
	Get(ctx context.Context, runID string) (*history.Record, error)
	List(ctx context.Context, f history.Filter) ([]history.Summary, error)
}

// Server is the daemon's HTTP API. It is an http.Handler; Serve runs it on a listener.
type Server struct {
	cfg     Config
	control daemon.Control
	hist    History
	reg     *prometheus.Registry
	met     *metrics.API
	log     *slog.Logger
	tokens  *auth.Source
	audit   *auditLog
	tls     *tls.Config
	mux     *http.ServeMux
}

// New checks cfg, loads the tokens (and the TLS pair) and opens the audit log. reg is the
// daemon's registry: /metrics serves it, and faultline_api_requests_total is registered on it.
// reg may be nil (then there is no /metrics and no request counting); log may be nil.
func New(cfg Config, control daemon.Control, hist History, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if control == nil || hist == nil {
		return nil, errors.New("API server: control and history are required")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("API server: TLS needs both a certificate and a key file")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	tokens, err := auth.NewSource(cfg.TokenFile, log)
	if err != nil {
		return nil, fmt.Errorf("API server: %w", err)
	}
	s := &Server{cfg: cfg, control: control, hist: hist, reg: reg, log: log, tokens: tokens}
	if reg != nil {
		if s.met, err = metrics.NewAPI(reg); err != nil {
			return nil, fmt.Errorf("API server: %w", err)
		}
	}
	if cfg.TLSCertFile != "" {
		cs, err := newCertSource(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("API server: %w", err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cs.get}
	}
	if s.audit, err = openAudit(cfg.AuditLog, log); err != nil {
		return nil, fmt.Errorf("API server: %w", err)
	}
	s.routes()
	return s, nil
}

// access is what a route demands of the caller.
type access int

const (
	public access = iota
	readAccess
	adminAccess // state-changing: audited
)

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	route := func(pattern string, acc access, h handler) { s.mux.Handle(pattern, s.wrap(pattern, acc, h)) }
	route("GET /healthz", public, s.healthz)
	route("GET /readyz", public, s.readyz)
	route("GET /api/v1/status", readAccess, s.status)
	route("GET /api/v1/schedules", readAccess, s.schedules)
	route("GET /api/v1/runs", readAccess, s.listRuns)
	route("GET /api/v1/runs/{id}", readAccess, s.getRun)
	s.mux.Handle("GET /api/v1/runs/{id}/report", s.guard("GET /api/v1/runs/{id}/report", readAccess, http.HandlerFunc(s.runReport)))
	route("POST /api/v1/runs", adminAccess, s.trigger)
	route("POST /api/v1/runs/{id}/halt", adminAccess, s.haltRun)
	route("POST /api/v1/halt", adminAccess, s.haltAll)
	route("POST /api/v1/pause", adminAccess, s.pause)
	route("POST /api/v1/resume", adminAccess, s.resume)
	route("POST /api/v1/reload", adminAccess, s.reload)
	if s.reg != nil {
		acc := public
		if s.cfg.MetricsAuth {
			acc = readAccess
		}
		prom := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
		s.mux.Handle("GET /metrics", s.guard("GET /metrics", acc, prom))
	}
}

// ServeHTTP implements http.Handler: it routes and counts the request by route and status.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r)
	route := r.Pattern // set by the mux on r
	if route == "" {
		route = "unmatched"
	}
	code := sw.code
	if code == 0 {
		code = http.StatusOK
	}
	s.met.Request(route, code)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReloadTokens rereads the token file now; the daemon calls it on SIGHUP. (The file is also
// reread whenever it changes.) On error the tokens loaded before stay in force.
func (s *Server) ReloadTokens() error { return s.tokens.Reload() }

// Serve serves the API on ln (with TLS when configured) until ctx ends, then shuts down
// gracefully: in-flight requests finish within Config.ShutdownTimeout. It returns nil after a
// clean shutdown. Serve does not close the audit log; Close does.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Requests keep ctx's values but not its cancellation: a shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			srv.TLSConfig = s.tls
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	s.log.InfoContext(ctx, "API listening", "addr", ln.Addr().String(), "tls", s.tls != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("API server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed, at once after Shutdown began
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("API server on %s: shutdown: %w", ln.Addr(), err)
	}
	return nil
}

// Close releases the audit log. Call it after Serve returned.
func (s *Server) Close() error { return s.audit.close() }

// reply is what a handler decided; wrap writes it (after the audit line, for audited routes).
type reply struct {
	code     int
	body     any
	location string
	// audit details; the rest of the entry comes from the request.
	runID, runbook, reason string
	halted                 []string
	// detail is what the call changed, in one line (a reload's changes).
	detail string
	err    error
}

type handler func(r *http.Request, who principal) reply

// wrap authenticates and authorises the request, runs h, writes the audit line for a
// state-changing route (allowed or not) and then the response.
func (s *Server) wrap(pattern string, acc access, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.check(w, r, pattern, acc)
		if !ok {
			return
		}
		if acc == adminAccess {
			// A halt returns once every fault of the run is reverted, which can take a while on
			// many hosts: the answer must not be cut off by the server's write timeout.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		}
		rep := h(r, who)
		if rep.err != nil && rep.code >= 500 {
			s.log.ErrorContext(r.Context(), "API call failed", "route", pattern, "who", who.Name, "err", rep.err)
		}
		if acc == adminAccess {
			outcome := OutcomeOK
			if rep.code >= 300 {
				outcome = OutcomeFailed
			}
			s.writeAudit(r, pattern, who, rep, outcome)
		}
		if rep.location != "" {
			w.Header().Set("Location", rep.location)
		}
		writeJSON(w, rep.code, rep.body)
	})
}

// guard puts an http.Handler behind the same authentication.
func (s *Server) guard(pattern string, acc access, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.check(w, r, pattern, acc); ok {
			next.ServeHTTP(w, r)
		}
	})
}

// check authenticates the caller as acc demands. On failure it answers 401 or 403 itself (and
// audits the attempt on a state-changing route) and returns false.
func (s *Server) check(w http.ResponseWriter, r *http.Request, pattern string, acc access) (principal, bool) {
	if acc == public {
		return principal{}, true
	}
	ar := s.tokens.Authenticate(r)
	if ar.Code == 0 && acc == adminAccess && ar.Who.Role != RoleAdmin {
		ar = auth.Forbidden(ar.Who, RoleAdmin)
	}
	if ar.Code == 0 {
		return ar.Who, true
	}
	w.Header().Set("WWW-Authenticate", ar.Hdr)
	rep := reply{code: ar.Code, body: ErrorResponse{Error: ar.Msg}, runID: r.PathValue("id"), err: errors.New(ar.Msg)}
	if acc == adminAccess {
		s.writeAudit(r, pattern, ar.Who, rep, OutcomeDenied)
	} else {
		s.log.DebugContext(r.Context(), "API request denied", "route", pattern, "remote", r.RemoteAddr, "code", ar.Code, "reason", ar.Msg)
	}
	writeJSON(w, rep.code, rep.body)
	return principal{}, false
}

func (s *Server) writeAudit(r *http.Request, pattern string, who principal, rep reply, outcome string) {
	e := AuditEntry{
		Time: time.Now().UTC(), Who: who.Name, Role: who.Role, Remote: r.RemoteAddr, Method: r.Method,
		Route: pattern, Path: r.URL.Path, RunID: rep.runID, Runbook: rep.runbook, Reason: rep.reason,
		Halted: rep.halted, Code: rep.code, Outcome: outcome, Detail: rep.detail,
	}
	if rep.err != nil {
		e.Error = rep.err.Error()
	}
	if err := s.audit.write(r.Context(), e); err != nil {
		// The call has happened; the entry went to the logger, the file is what failed.
		s.log.ErrorContext(r.Context(), "audit log write failed", "err", err)
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body) // the status is sent; a broken connection has no one left to tell
}

// certSource serves the TLS pair, reloading it when either file changes.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	sigs    [2]auth.FileSig
	cert    *tls.Certificate
	lastErr string
}

func newCertSource(certFile, keyFile string, log *slog.Logger) (*certSource, error) {
	cs := &certSource{certFile: certFile, keyFile: keyFile, log: log}
	if err := cs.load(); err != nil {
		return nil, err
	}
	return cs, nil
}

func (cs *certSource) load() error {
	var sigs [2]auth.FileSig
	for i, p := range []string{cs.certFile, cs.keyFile} {
		sig, err := auth.StatSig(p)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		sigs[i] = sig
	}
	cert, err := tls.LoadX509KeyPair(cs.certFile, cs.keyFile)
	if err != nil {
		return fmt.Errorf("TLS: load %s and %s: %w", cs.certFile, cs.keyFile, err)
	}
	cs.sigs, cs.cert = sigs, &cert
	return nil
}

func (cs *certSource) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, err := auth.StatSig(cs.certFile)
	k, kerr := auth.StatSig(cs.keyFile)
	if err != nil || kerr != nil || [2]auth.FileSig{c, k} == cs.sigs {
		return cs.cert, nil
	}
	if err := cs.load(); err != nil {
		if err.Error() != cs.lastErr {
			cs.lastErr = err.Error()
			cs.log.ErrorContext(hello.Context(), "TLS pair not reloaded; serving the one loaded before", "err", err)
		}
		return cs.cert, nil
	}
	cs.lastErr = ""
	cs.log.InfoContext(hello.Context(), "TLS pair reloaded", "cert", cs.certFile)
	return cs.cert, nil
}
