package agentapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// ErrGone matches (errors.Is) the error of a renewal the agent answered with 410: the fault was
// already reverted (its lease expired, its pod went away). Renew returns the reverted Fault with it.
var ErrGone = errors.New("fault already reverted by the agent")

// ErrNotFound matches the error of a 404: an unknown fault id, or an unknown pod. A Revert that
// gets it may treat the fault as reverted.
var ErrNotFound = errors.New("not found on the agent")

// APIError is an error response of the agent.
type APIError struct {
	Status int
	Rule   string
	Msg    string
}

func (e *APIError) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("agent: %s (rule %s, HTTP %d)", e.Msg, e.Rule, e.Status)
	}
	return fmt.Sprintf("agent: %s (HTTP %d)", e.Msg, e.Status)
}

// Is makes errors.Is(err, ErrGone) and errors.Is(err, ErrNotFound) work on the status.
func (e *APIError) Is(target error) bool {
	return (target == ErrGone && e.Status == http.StatusGone) ||
		(target == ErrNotFound && e.Status == http.StatusNotFound)
}

// Client talks to one agent.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of the agent at baseURL (https://10.0.0.7:7470). tlsConf is
// normally ClientTLS's; nil means plain HTTP, which agents refuse unless started without TLS.
func NewClient(baseURL string, tlsConf *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.Proxy = nil // agents are reached directly on the node network
	return &Client{
		base: strings.TrimRight(baseURL, "/"),
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}
}

// SetDialContext replaces how connections to the agent are made (a namespace's dialer, a
// tunnel). Call it before the first request.
func (c *Client) SetDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	c.http.Transport.(*http.Transport).DialContext = dial
}

// BaseURL is the agent's address as given to NewClient.
func (c *Client) BaseURL() string { return c.base }

// CloseIdleConnections releases the client's kept-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Apply asks the agent to apply and hold a fault. Applying the same ID again returns the fault
// already held.
func (c *Client) Apply(ctx context.Context, req FaultRequest) (Fault, error) {
	var f Fault
	err := c.do(ctx, http.MethodPost, "/v1/faults", req, &f)
	return f, err
}

// Plan asks the agent what Apply would do with req: the targets it would select, or why it
// would refuse. Nothing is applied.
func (c *Client) Plan(ctx context.Context, req FaultRequest) (Fault, error) {
	var f Fault
	err := c.do(ctx, http.MethodPost, "/v1/plans", req, &f)
	return f, err
}

// Renew extends a fault's lease to lease from now. When the agent has already reverted the fault
// it returns that Fault and an error matching ErrGone.
func (c *Client) Renew(ctx context.Context, id string, lease time.Duration) (Fault, error) {
	var f Fault
	err := c.do(ctx, http.MethodPost, "/v1/faults/"+url.PathEscape(id)+"/renew",
		RenewRequest{Lease: runbooks.Duration(lease)}, &f)
	return f, err
}

// Revert asks the agent to revert a fault now. An error matching ErrNotFound means the agent does
// not know the id (never applied, or forgotten long after its revert).
func (c *Client) Revert(ctx context.Context, id string) (Fault, error) {
	var f Fault
	err := c.do(ctx, http.MethodDelete, "/v1/faults/"+url.PathEscape(id), nil, &f)
	return f, err
}

// List returns the faults the agent holds and those it reverted recently.
func (c *Client) List(ctx context.Context) ([]Fault, error) {
	var fs []Fault
	err := c.do(ctx, http.MethodGet, "/v1/faults", nil, &fs)
	return fs, err
}

// do sends one request. On 410 the body (a GoneBody) is decoded into out as well.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("agent request %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %s %s: %w", c.base, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("agent %s: read response of %s %s: %w", c.base, method, path, err)
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusGone {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("agent %s: decode response of %s %s (HTTP %d): %w", c.base, method, path, resp.StatusCode, err)
		}
		if resp.StatusCode/100 == 2 {
			return nil
		}
	}
	var eb ErrorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
		eb.Error = strings.TrimSpace(string(b))
		if eb.Error == "" {
			eb.Error = http.StatusText(resp.StatusCode)
		}
	}
	return &APIError{Status: resp.StatusCode, Rule: eb.Rule, Msg: eb.Error}
}
