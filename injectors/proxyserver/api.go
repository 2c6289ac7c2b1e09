package proxyserver

import (
	"errors"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// Errors the server's operations return (the HTTP layer maps them to 404 and 400; the client maps
// those back).
var (
	ErrNotFound = errors.New("no such proxy")
	ErrInvalid  = errors.New("invalid request")
)

// ProxiesResponse is GET /v1/proxies.
type ProxiesResponse struct {
	Proxies []ProxyStatus `json:"proxies"`
}

// ProxyStatus is one proxy: where it listens, where it connects, who holds toxics on it.
type ProxyStatus struct {
	Name     string     `json:"name"`
	Listen   string     `json:"listen"`
	Upstream string     `json:"upstream"`
	Toxics   []ToxicSet `json:"toxics"`
	Stats    Stats      `json:"stats"`
}

// ToxicSet is the toxics one owner holds on a proxy.
type ToxicSet struct {
	Owner     string                `json:"owner"`
	ExpiresAt time.Time             `json:"expiresAt"`
	Toxics    []runbooks.ProxyToxic `json:"toxics"`
	// Description is each toxic as a human reads it ("latency 100ms ± 20ms (normal), downstream").
	Description []string `json:"description"`
}

// Stats counts a proxy's connections since the server started.
type Stats struct {
	Accepted   int64 `json:"accepted"`
	Proxied    int64 `json:"proxied"`
	DialErrors int64 `json:"dialErrors"`
	Open       int64 `json:"open"`
}

// SetToxicsRequest is the body of PUT /v1/proxies/{name}/toxics/{owner}. It replaces whatever the
// owner held on the proxy; sending the same body again renews the lease.
type SetToxicsRequest struct {
	Toxics []runbooks.ProxyToxic `json:"toxics"`
	Lease  runbooks.Duration     `json:"lease"`
}

// SetToxicsResponse says until when the toxics stay without another PUT.
type SetToxicsResponse struct {
	ExpiresAt time.Time `json:"expiresAt"`
	// Description is each toxic as the server applies it, for the run's result.
	Description []string `json:"description"`
}

// ResetResponse is DELETE /v1/toxics: how many owners' toxic sets were removed.
type ResetResponse struct {
	Removed int `json:"removed"`
}

// ErrorResponse is every error's body.
type ErrorResponse struct {
	Error string `json:"error"`
}
