package proxyserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// Client calls a proxy server's API.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the server at addr (http(s)://HOST:PORT, or HOST:PORT for
// http) that sends token, if any, as a bearer token. hc nil means a client of its own.
func NewClient(addr, token string, hc *http.Client) (*Client, error) {
	u, err := runbooks.ParseServerURL(addr)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Client{base: u.String(), token: token, hc: hc}, nil
}

// Base is the server's address as the client uses it.
func (c *Client) Base() string { return c.base }

// APIError is an answer other than success; Code is the HTTP status.
type APIError struct {
	Code int
	Msg  string
}

func (e *APIError) Error() string { return fmt.Sprintf("proxy server: %s (HTTP %d)", e.Msg, e.Code) }

// Is makes errors.Is(err, ErrNotFound) true for a 404 and ErrInvalid for a 400.
func (e *APIError) Is(target error) bool {
	return (target == ErrNotFound && e.Code == http.StatusNotFound) || (target == ErrInvalid && e.Code == http.StatusBadRequest)
}

// Proxies lists the server's proxies.
func (c *Client) Proxies(ctx context.Context) ([]ProxyStatus, error) {
	var out ProxiesResponse
	if err := c.do(ctx, http.MethodGet, "/v1/proxies", nil, &out); err != nil {
		return nil, err
	}
	return out.Proxies, nil
}

// Proxy returns one proxy; errors.Is(err, ErrNotFound) when the server has no such proxy.
func (c *Client) Proxy(ctx context.Context, name string) (ProxyStatus, error) {
	var out ProxyStatus
	err := c.do(ctx, http.MethodGet, "/v1/proxies/"+url.PathEscape(name), nil, &out)
	return out, err
}

// SetToxics replaces owner's toxics on the named proxy, or renews their lease when unchanged.
func (c *Client) SetToxics(ctx context.Context, name, owner string, toxics []runbooks.ProxyToxic, lease time.Duration) (SetToxicsResponse, error) {
	var out SetToxicsResponse
	err := c.do(ctx, http.MethodPut, "/v1/proxies/"+url.PathEscape(name)+"/toxics/"+url.PathEscape(owner),
		SetToxicsRequest{Toxics: toxics, Lease: runbooks.Duration(lease)}, &out)
	return out, err
}

// DeleteToxics removes owner's toxics from the named proxy; holding none is not an error.
func (c *Client) DeleteToxics(ctx context.Context, name, owner string) error {
	return c.do(ctx, http.MethodDelete, "/v1/proxies/"+url.PathEscape(name)+"/toxics/"+url.PathEscape(owner), nil, nil)
}

// Reset removes every toxic of every proxy and returns how many owners' sets went.
func (c *Client) Reset(ctx context.Context) (int, error) {
	var out ResetResponse
	err := c.do(ctx, http.MethodDelete, "/v1/toxics", nil, &out)
	return out.Removed, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("proxy server %s: %w", c.base, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("proxy server %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("proxy server %s: read answer: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &APIError{Code: resp.StatusCode, Msg: e.Error}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("proxy server %s: decode answer: %w", c.base, err)
	}
	return nil
}

// errUnreachable tells whether err means the server could not be reached at all (as opposed to
// an answer).
func errUnreachable(err error) bool {
	var ae *APIError
	return err != nil && !errors.As(err, &ae)
}
