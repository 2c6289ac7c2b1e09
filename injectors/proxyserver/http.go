//go:build linux

package proxyserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/faultline-dev/faultline/internal/auth"
	"github.com/faultline-dev/faultline/runbooks"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

type access int

const (
	public access = iota
	readAccess
	adminAccess
)

// Handler serves the API (routes in the package documentation). tokens nil means no token file:
// every call is answered without authentication (the command decides whether that is allowed).
// gather is what /metrics serves; nil leaves /metrics out.
func (s *Server) Handler(tokens *auth.Source, gather prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &apiHandler{s: s, tokens: tokens, log: log, mux: http.NewServeMux()}
	h.route("GET /healthz", public, func(*http.Request) (int, any) { return http.StatusOK, map[string]string{"status": "ok"} })
	h.route("GET /v1/proxies", readAccess, func(*http.Request) (int, any) {
		return http.StatusOK, ProxiesResponse{Proxies: s.Status()}
	})
	h.route("GET /v1/proxies/{name}", readAccess, func(r *http.Request) (int, any) {
		ps, err := s.Proxy(r.PathValue("name"))
		if err != nil {
			return errorReply(err)
		}
		return http.StatusOK, ps
	})
	h.route("PUT /v1/proxies/{name}/toxics/{owner}", adminAccess, h.setToxics)
	h.route("DELETE /v1/proxies/{name}/toxics/{owner}", adminAccess, func(r *http.Request) (int, any) {
		if _, err := s.DeleteToxics(r.PathValue("name"), r.PathValue("owner")); err != nil {
			return errorReply(err)
		}
		return http.StatusNoContent, nil
	})
	h.route("DELETE /v1/toxics", adminAccess, func(*http.Request) (int, any) {
		n, err := s.Reset()
		if err != nil {
			return errorReply(err)
		}
		return http.StatusOK, ResetResponse{Removed: n}
	})
	if gather != nil {
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	}
	return h.mux
}

type apiHandler struct {
	s      *Server
	tokens *auth.Source
	log    *slog.Logger
	mux    *http.ServeMux
}

func (h *apiHandler) route(pattern string, acc access, f func(*http.Request) (int, any)) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if acc != public && h.tokens != nil {
			ar := h.tokens.Authenticate(r)
			if ar.Code == 0 && acc == adminAccess && ar.Who.Role != auth.RoleAdmin {
				ar = auth.Forbidden(ar.Who, auth.RoleAdmin)
			}
			if ar.Code != 0 {
				w.Header().Set("WWW-Authenticate", ar.Hdr)
				writeJSON(w, ar.Code, ErrorResponse{Error: ar.Msg})
				return
			}
			who = ar.Who.Name
		}
		code, body := f(r)
		if acc == adminAccess {
			// Debug: a renewal every third of a lease would flood info; the server logs each
			// actual change (set, delete, expire, reset) at info or above.
			h.log.Debug("proxy API call", "route", pattern, "who", who, "remote", r.RemoteAddr, "code", code)
		}
		writeJSON(w, code, body)
	})
}

func (h *apiHandler) setToxics(r *http.Request) (int, any) {
	var req SetToxicsRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, ErrorResponse{Error: fmt.Sprintf("body over %d bytes", maxBody)}
		}
		return http.StatusBadRequest, ErrorResponse{Error: "body: " + err.Error()}
	}
	lease := req.Lease.D()
	if lease == 0 {
		lease = runbooks.DefaultToxicLease
	}
	resp, err := h.s.SetToxics(r.PathValue("name"), r.PathValue("owner"), req.Toxics, lease)
	if err != nil {
		return errorReply(err)
	}
	resp.ExpiresAt = resp.ExpiresAt.UTC()
	return http.StatusOK, resp
}

func errorReply(err error) (int, any) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	}
	return code, ErrorResponse{Error: err.Error()}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	if code == http.StatusNoContent || body == nil {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
