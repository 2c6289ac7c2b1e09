package agent

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HandlerOptions vary Handler.
type HandlerOptions struct {
	// RequireCert makes every /v1 request need TLS with a client certificate that verified against
	// the agent's CA (agentapi.ServerTLS): none is 401. Health endpoints need none.
	RequireCert bool
	// AllowedClients, when set, are the only certificate names (common name or DNS name) allowed:
	// another name, though signed by the CA, is 403.
	AllowedClients []string
	// Ready reports readiness for /readyz (nil: always ready).
	Ready func() error
}

// Handler serves the agent's API.
func (a *Agent) Handler(o HandlerOptions) http.Handler {
	ready := o.Ready
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/faults", a.handleApply)
	mux.HandleFunc("POST /v1/plans", a.handlePlan)
	mux.HandleFunc("GET /v1/faults", a.handleList)
	mux.HandleFunc("POST /v1/faults/{id}/renew", a.handleRenew)
	mux.HandleFunc("DELETE /v1/faults/{id}", a.handleRevert)
	api := http.Handler(mux)
	if o.RequireCert {
		api = requireClientCert(mux, o.AllowedClients, a.log)
	}
	root := http.NewServeMux()
	root.Handle("/v1/", api)
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	root.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return root
}

// MetricsHandler serves g's metrics in the Prometheus format, with the health endpoints.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return mux
}

func requireClientCert(next http.Handler, allowed []string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeErr(w, http.StatusUnauthorized, "tls", "the agent's API needs HTTPS with a client certificate signed by the agent's CA")
			return
		}
		if !agentapi.Authenticated(r.TLS) {
			log.Warn("refused a request without a client certificate", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			writeErr(w, http.StatusUnauthorized, "tls", "no client certificate: present one signed by the agent's CA")
			return
		}
		if len(allowed) > 0 && !certAllowed(r.TLS.VerifiedChains[0][0], allowed) {
			log.Warn("refused a client certificate not allowed", "remote", r.RemoteAddr, "subject", r.TLS.VerifiedChains[0][0].Subject.String())
			writeErr(w, http.StatusForbidden, "tls", "client certificate "+r.TLS.VerifiedChains[0][0].Subject.String()+" is not among the agent's allowed clients")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func certAllowed(c *x509.Certificate, allowed []string) bool {
	for _, n := range allowed {
		if c.Subject.CommonName == n || slices.Contains(c.DNSNames, n) {
			return true
		}
	}
	return false
}

const maxBody = 1 << 20

func decodeRequest(w http.ResponseWriter, r *http.Request) (agentapi.FaultRequest, bool) {
	var req agentapi.FaultRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "body", "request body is not a FaultRequest: "+err.Error())
		return req, false
	}
	return req, true
}

func (a *Agent) handlePlan(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeRequest(w, r)
	if !ok {
		return
	}
	f, err := a.Plan(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeRequest(w, r)
	if !ok {
		return
	}
	f, created, err := a.Apply(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, f)
}

func (a *Agent) handleRenew(w http.ResponseWriter, r *http.Request) {
	var req agentapi.RenewRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "body", "request body is not a RenewRequest: "+err.Error())
		return
	}
	f, err := a.Renew(r.Context(), r.PathValue("id"), req.Lease.D())
	var se *statusError
	if errors.As(err, &se) && se.status == http.StatusGone {
		writeJSON(w, http.StatusGone, agentapi.GoneBody{Fault: f, ErrorBody: agentapi.ErrorBody{Error: se.msg, Rule: se.rule}})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *Agent) handleRevert(w http.ResponseWriter, r *http.Request) {
	f, err := a.Revert(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (a *Agent) handleList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.List())
}

// fail answers an error: a refusal with its status and rule, anything else 500.
func (a *Agent) fail(w http.ResponseWriter, r *http.Request, err error) {
	var se *statusError
	if errors.As(err, &se) {
		a.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", se.status, "rule", se.rule, "err", se.msg)
		writeErr(w, se.status, se.rule, se.msg)
		return
	}
	a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeErr(w, http.StatusInternalServerError, "", err.Error())
}

func writeErr(w http.ResponseWriter, status int, rule, msg string) {
	writeJSON(w, status, agentapi.ErrorBody{Error: msg, Rule: rule})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
