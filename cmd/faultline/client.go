package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/api"
)

// The commands that talk to a running daemon (status, history, trigger, halt --server) share
// these flags and this client.

const (
	serverEnv = "FAULTLINE_SERVER"
	tokenEnv  = "FAULTLINE_TOKEN"
)

func apiFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", EnvVars: []string{serverEnv},
			Usage: "the daemon's API, e.g. https://faultline.staging:8480 (http:// when no scheme is given)"},
		&cli.StringFlag{Name: "token-file", Usage: "file holding the API bearer token (default: the token in $" + tokenEnv + ")"},
		&cli.StringFlag{Name: "ca-file", EnvVars: []string{"FAULTLINE_CA_FILE"}, Usage: "PEM CA certificates to verify the daemon's TLS certificate with"},
		&cli.DurationFlag{Name: "request-timeout", Value: 2 * time.Minute,
			Usage: "how long to wait for each API request, a duration such as 30s or 2m; a halt is answered only once every fault is reverted, so keep it above your revert time"},
	}
}

// apiClient calls the daemon's API.
type apiClient struct {
	base  string // scheme://host[:port], no trailing slash
	token string
	hc    *http.Client
}

// newAPIClient builds a client from the flags; a usage problem is exit 4.
func newAPIClient(c *cli.Context) (*apiClient, error) {
	server := strings.TrimSpace(c.String("server"))
	if server == "" {
		return nil, exitWith(exitInvalid, fmt.Errorf("which daemon? pass --server URL or set %s", serverEnv))
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, exitWith(exitInvalid, fmt.Errorf("--server %q: want http(s)://HOST:PORT", c.String("server")))
	}
	a := &apiClient{base: u.Scheme + "://" + u.Host}

	switch path := c.String("token-file"); {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, exitWith(exitInvalid, fmt.Errorf("--token-file: %w", err))
		}
		a.token = strings.TrimSpace(string(b))
		if a.token == "" || strings.ContainsAny(a.token, " \t\n") {
			return nil, exitWith(exitInvalid, fmt.Errorf("--token-file %s: want the token alone (the daemon's tokens file has TOKEN ROLE NAME lines; the client file holds just a TOKEN)", path))
		}
	default:
		a.token = strings.TrimSpace(os.Getenv(tokenEnv))
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := c.String("ca-file"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, exitWith(exitInvalid, fmt.Errorf("--ca-file: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, exitWith(exitInvalid, fmt.Errorf("--ca-file %s: no PEM certificates in it", ca))
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a.hc = &http.Client{Transport: tr, Timeout: c.Duration("request-timeout")}
	return a, nil
}

// apiError is an answer other than 2xx.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// exit maps a client error to an exit code: a refusal (4xx: bad request, no or wrong token,
// policy, unknown run, conflict) is 4 like any refusal; an unreachable or failing daemon is 5.
func apiExit(err error) error {
	if ae, ok := errors.AsType[*apiError](err); ok && ae.code >= 400 && ae.code < 500 {
		return exitWith(exitInvalid, err)
	}
	return exitWith(exitAborted, err)
}

// do sends a request with body (JSON, when not nil) and decodes a 2xx answer into out (when not
// nil). Errors say what to do about them.
func (a *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return a.transportError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s %s from %s: %w", method, path, a.base, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode the answer of %s %s from %s: %w", method, path, a.base, err)
		}
		return nil
	}
	var er api.ErrorResponse
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		msg = er.Error
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if a.token == "" {
			msg = fmt.Sprintf("the daemon at %s wants a token: pass --token-file FILE or set %s (%s)", a.base, tokenEnv, msg)
		} else {
			msg = fmt.Sprintf("the daemon at %s did not accept the token (%s): check --token-file or %s", a.base, msg, tokenEnv)
		}
	case http.StatusForbidden:
		msg = fmt.Sprintf("refused by the daemon at %s: %s", a.base, msg)
	case http.StatusBadRequest:
		if strings.Contains(msg, "HTTP request to an HTTPS server") {
			msg = fmt.Sprintf("the daemon at %s serves HTTPS: use --server %s", a.base, strings.Replace(a.base, "http://", "https://", 1))
			break
		}
		msg = fmt.Sprintf("%s (%d from %s)", msg, resp.StatusCode, a.base)
	default:
		msg = fmt.Sprintf("%s (%d from %s)", msg, resp.StatusCode, a.base)
	}
	return &apiError{code: resp.StatusCode, msg: msg}
}

func (a *apiClient) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return fmt.Errorf("cannot verify the certificate of the daemon at %s: pass --ca-file with its CA: %w", a.base, err)
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return fmt.Errorf("the certificate of the daemon at %s is not for this name: %w", a.base, err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot connect to %s: is the daemon running at %s? (%w)", a.base, a.base, err)
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok {
		return fmt.Errorf("cannot resolve %s: %w", dns.Name, err)
	}
	if ue, ok := errors.AsType[*url.Error](err); ok && ue.Timeout() {
		return fmt.Errorf("no answer from %s in time (--request-timeout): is the daemon running at %s? (%w)", a.base, a.base, err)
	}
	return fmt.Errorf("cannot reach the daemon at %s: %w", a.base, err)
}

// Calls used by more than one command.

func (a *apiClient) run(ctx context.Context, id string) (*api.RunResponse, error) {
	var r api.RunResponse
	if err := a.do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (a *apiClient) runs(ctx context.Context, q url.Values) (*api.RunsResponse, error) {
	path := "/api/v1/runs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r api.RunsResponse
	if err := a.do(ctx, http.MethodGet, path, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func checkOutput(c *cli.Context) (string, error) {
	o := c.String("output")
	if o != "text" && o != "json" {
		return "", exitWith(exitInvalid, fmt.Errorf("--output must be text or json, got %q", o))
	}
	return o, nil
}

func outputFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: usage}
}

// ago renders a past time for tables: "14:03:07 (3m ago)", with the date when not today.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return clock(t, now) + " (" + roughly(now.Sub(t)) + " ago)"
}

// until renders a future time for tables: "2025-03-05 02:00 (in 9h12m)".
func until(t, now time.Time) string {
	return clock(t, now) + " (in " + roughly(t.Sub(now)) + ")"
}

func clock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

// roughly rounds a duration to what a person reads at a glance.
func roughly(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		d = d.Round(time.Minute)
	default:
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
