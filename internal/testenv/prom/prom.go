// Package prom starts the real Prometheus server (Debian package prometheus, /usr/bin/prometheus)
// for tests, scraping a real HTTP target whose metrics the test sets. The server gets a generated
// configuration with fast scrapes (100ms by default), a TSDB in a temp dir and a free loopback port;
// optionally its API is served over TLS with basic auth (Prometheus's own --web.config.file).
//
// Start waits for /-/ready and for the first successful scrape of the target (up{job="target"} == 1)
// with a deadline; there are no sleeps. Without the binary the test is skipped, or fails under
// CI=true. Only tests import this package.
package prom

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultBinary is where the Debian package installs Prometheus.
const DefaultBinary = "/usr/bin/prometheus"

// TargetJob is the job name of the target every Server scrapes.
const TargetJob = "target"

// Username and Password are the basic-auth credentials a server started WithBasicAuth accepts.
const (
	Username = "faultline"
	Password = "faultline-test-password"
	// passwordHash is bcrypt(Password, cost 4); Prometheus's web config only takes bcrypt hashes.
	passwordHash = "$2a$04$qpQA6e8FCfbOqiCQIIp/deSUdXZX6QCkykxd7THP2KDlJSmb3SgRG"
)

// Option configures Start.
type Option func(*options)

type options struct {
	binary         string
	scrapeInterval time.Duration
	startTimeout   time.Duration
	tls            bool
	basicAuth      bool
	jobs           map[string]string
}

// WithScrapeInterval sets scrape_interval and evaluation_interval (default 100ms).
func WithScrapeInterval(d time.Duration) Option { return func(o *options) { o.scrapeInterval = d } }

// WithTLS serves the Prometheus API over TLS with a certificate from a CA generated for the test
// (Server.CA names its file).
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithBasicAuth makes the API require basic auth with Username and Password.
func WithBasicAuth() Option { return func(o *options) { o.basicAuth = true } }

// WithJob adds a static scrape job for addr (host:port), e.g. a faultline --metrics-addr that will
// start later; Start does not wait for it to be up.
func WithJob(job, addr string) Option {
	return func(o *options) {
		if o.jobs == nil {
			o.jobs = map[string]string{}
		}
		o.jobs[job] = addr
	}
}

// WithStartTimeout bounds how long Start waits for the server (default 60s; Prometheus hands
// discovered targets to the scrape loop only every 5s, so a start takes about that long).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithBinary overrides the Prometheus binary.
func WithBinary(path string) Option { return func(o *options) { o.binary = path } }

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL of the API, e.g. http://127.0.0.1:41234 (https:// WithTLS).
	URL string
	// Addr is host:port of the API.
	Addr string
	// ScrapeInterval is the configured scrape (and evaluation) interval.
	ScrapeInterval time.Duration
	// Target is the HTTP target the server scrapes as job "target".
	Target *Target
	// CA is set WithTLS: the CA that signed the server's certificate.
	CA *CA
	// PasswordFile is set WithBasicAuth: a file holding Password.
	PasswordFile string
	// Dir holds the configuration, the TSDB and the log.
	Dir string

	t       testing.TB
	client  *http.Client
	api     promv1.API
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

// Start starts Prometheus and its target, and registers their shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{binary: DefaultBinary, scrapeInterval: 100 * time.Millisecond, startTimeout: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	if _, err := os.Stat(o.binary); err != nil {
		msg := fmt.Sprintf("prometheus binary %s not available (apt-get install prometheus): %v", o.binary, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := &Server{Dir: t.TempDir(), ScrapeInterval: o.scrapeInterval, t: t}
	s.Target = StartTarget(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.tls {
		ca, err := NewCA(filepath.Join(s.Dir, "pki"))
		if err != nil {
			t.Fatalf("prometheus test CA: %v", err)
		}
		s.CA = ca
		tr.TLSClientConfig = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if o.basicAuth {
		s.PasswordFile = filepath.Join(s.Dir, "password")
		if err := os.WriteFile(s.PasswordFile, []byte(Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		rt = basicAuthRT{next: tr}
	}
	s.client = &http.Client{Transport: rt}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		lastErr = s.start(o)
		if lastErr == nil {
			break
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	if lastErr != nil {
		s.dumpLog()
		t.Fatalf("start prometheus: %v", lastErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLog()
		}
		s.stop()
	})
	return s
}

var errAddrInUse = errors.New("address already in use")

func (s *Server) start(o options) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	s.URL = scheme + "://" + s.Addr

	cfgPath := filepath.Join(s.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(s.config(o)), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	args := []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(s.Dir, fmt.Sprintf("data-%d", port)),
		"--web.listen-address=" + s.Addr,
		"--web.enable-lifecycle",
		"--log.level=info",
	}
	if o.tls || o.basicAuth {
		webPath := filepath.Join(s.Dir, "web.yml")
		var b strings.Builder
		if o.tls {
			cert, key, err := s.CA.Issue("prometheus", "127.0.0.1", "localhost")
			if err != nil {
				return fmt.Errorf("issue server certificate: %w", err)
			}
			fmt.Fprintf(&b, "tls_server_config:\n  cert_file: %s\n  key_file: %s\n", cert, key)
		}
		if o.basicAuth {
			fmt.Fprintf(&b, "basic_auth_users:\n  %s: %q\n", Username, passwordHash)
		}
		if err := os.WriteFile(webPath, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("write web config: %w", err)
		}
		args = append(args, "--web.config.file="+webPath)
	}
	s.logPath = filepath.Join(s.Dir, fmt.Sprintf("prometheus-%d.log", port))
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(o.binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", o.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	client, err := api.NewClient(api.Config{Address: s.URL, Client: s.client})
	if err != nil {
		s.stop()
		return fmt.Errorf("api client: %w", err)
	}
	s.api = promv1.NewAPI(client)

	ctx, cancel := context.WithTimeout(context.Background(), o.startTimeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		if log, _ := os.ReadFile(s.logPath); bytes.Contains(log, []byte("address already in use")) {
			return errAddrInUse
		}
		return err
	}
	return nil
}

func (s *Server) config(o options) string {
	var b strings.Builder
	iv := model.Duration(o.scrapeInterval).String()
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", iv, iv, iv)
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", TargetJob, s.Target.Addr)
	for job, addr := range o.jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", job, addr)
	}
	return b.String()
}

// waitReady waits for /-/ready, then for the first successful scrape of the target.
func (s *Server) waitReady(ctx context.Context) error {
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-s.done:
			return false, fmt.Errorf("prometheus exited during start")
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if err != nil {
			return false, err
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s/-/ready: %w", s.URL, err)
	}
	q := fmt.Sprintf(`up{job=%q} == 1`, TargetJob)
	if _, err := s.WaitVector(ctx, q, func(v model.Vector) bool { return len(v) > 0 }); err != nil {
		return fmt.Errorf("wait for the first scrape of the target: %w", err)
	}
	return nil
}

// API is a client for the server's HTTP API, with its TLS and credentials.
func (s *Server) API() promv1.API { return s.api }

// HTTPClient is an HTTP client that can talk to the server (its CA and credentials).
func (s *Server) HTTPClient() *http.Client { return s.client }

// Query evaluates an instant query now.
func (s *Server) Query(ctx context.Context, q string) (model.Value, error) {
	v, _, _, err := s.api.Query(ctx, q, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	return v, nil
}

// WaitVector polls an instant query until cond holds on its result, or ctx ends.
func (s *Server) WaitVector(ctx context.Context, q string, cond func(model.Vector) bool) (model.Vector, error) {
	var last model.Vector
	var lastErr error
	err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		v, err := s.Query(ctx, q)
		if err != nil {
			lastErr = err
			return false, nil
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return false, fmt.Errorf("query %s returned a %s, not a vector", q, v.Type())
		}
		last = vec
		return cond(vec), nil
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last query error: %v)", err, lastErr)
		}
		return last, fmt.Errorf("waiting on %s (last result %v): %w", q, last, err)
	}
	return last, nil
}

// WaitIngested waits until Prometheus holds a sample of the target scraped at or after since, and
// returns that sample's timestamp (the scrape time). Use it to know that a value the test set is
// visible to queries.
func (s *Server) WaitIngested(ctx context.Context, since time.Time) (time.Time, error) {
	q := fmt.Sprintf(`timestamp(up{job=%q})`, TargetJob)
	want := float64(since.UnixMilli()) / 1000
	v, err := s.WaitVector(ctx, q, func(v model.Vector) bool { return len(v) > 0 && float64(v[0].Value) >= want })
	if err != nil {
		return time.Time{}, err
	}
	ms := int64(float64(v[0].Value)*1000 + 0.5)
	return time.UnixMilli(ms), nil
}

// Kill sends SIGKILL to Prometheus and waits until it has exited: its port refuses connections
// from then on (the fail-closed case).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Pid is the Prometheus process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *Server) dumpLog() {
	if s.logPath == "" {
		return
	}
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	s.t.Logf("prometheus log (%s), last %d lines:\n%s", s.logPath, len(lines), strings.Join(lines, "\n"))
}

type basicAuthRT struct{ next http.RoundTripper }

func (b basicAuthRT) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.SetBasicAuth(Username, Password)
	return b.next.RoundTrip(req)
}

// FreeAddr returns a loopback host:port that was free a moment ago (for a process started later).
func FreeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// poll calls cond every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
