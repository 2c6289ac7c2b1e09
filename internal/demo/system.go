// Package demo starts the sample system `faultline demo` plays its game day against, all as child
// processes of the faultline binary on 127.0.0.1: three shards, one `faultline proxy serve` with a
// proxy in front of each shard (where the demo's faults go, as proxyToxics), a gateway with a
// circuit breaker per shard and an autoscaled worker pool, and the embedded Prometheus
// (promstore) scraping them all. Nothing is downloaded and nothing needs root; Close leaves no
// process and no listener behind.
package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/internal/demo/promstore"
)

// Options configure Start. Zero values take the defaults.
type Options struct {
	// Binary is the faultline executable the children run (default: this executable).
	Binary string
	// Shards is how many shards to start (default 3), named shard-1, shard-2, ...
	Shards int
	// ScrapeInterval of the embedded Prometheus (default 250ms).
	ScrapeInterval time.Duration
	// GatewayArgs are extra flags for the gateway (breaker and autoscaler settings; see
	// `faultline demo-sample --role gateway -h`).
	GatewayArgs []string
	// StartTimeout bounds the start of every part (default 30s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// System is the running sample system.
type System struct {
	// GatewayURL is where requests go, e.g. http://127.0.0.1:40123/ (add ?shard=shard-2 to pick).
	GatewayURL string
	// ProxyServerURL is the API of the proxy server; ProxyNames its proxies, one per shard and
	// named as the shards (shard-1, ...), in order.
	ProxyServerURL string
	ProxyNames     []string
	// ProxyAddrs are where the proxies listen (what the gateway calls), by name.
	ProxyAddrs map[string]string
	// PrometheusURL is the embedded Prometheus's HTTP API.
	PrometheusURL string
	// ShardAddrs are the shards' own addresses (behind the proxies), by name.
	ShardAddrs map[string]string

	prom     *promstore.Server
	children []*child
	dir      string
	log      *slog.Logger
}

// Start starts the system and returns once every part answers. On error, whatever was started is
// stopped again.
func Start(ctx context.Context, o Options) (_ *System, err error) {
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("demo: find the faultline binary: %w", err)
		}
	}
	if o.Shards <= 0 {
		o.Shards = 3
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &System{ShardAddrs: map[string]string{}, log: o.Logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "faultline-demo-"); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	var proxyArgs []string
	for i := 1; i <= o.Shards; i++ {
		name := fmt.Sprintf("shard-%d", i)
		addrFile := filepath.Join(s.dir, name+".addr")
		c, err := s.start(o.Binary, name, "demo-sample", "--role", "shard", "--name", name, "--addr-file", addrFile)
		if err != nil {
			return nil, err
		}
		if s.ShardAddrs[name], err = c.waitAddr(sctx, addrFile); err != nil {
			return nil, err
		}
		s.ProxyNames = append(s.ProxyNames, name)
		proxyArgs = append(proxyArgs, "--proxy", name+"=127.0.0.1:0="+s.ShardAddrs[name])
	}
	proxyListen, err := s.startProxies(sctx, o.Binary, proxyArgs)
	if err != nil {
		return nil, err
	}
	gwArgs := []string{"demo-sample", "--role", "gateway", "--addr-file", filepath.Join(s.dir, "gateway.addr")}
	for _, name := range s.ProxyNames {
		gwArgs = append(gwArgs, "--shard", name+"="+proxyListen[name])
	}
	gw, err := s.start(o.Binary, "gateway", append(gwArgs, o.GatewayArgs...)...)
	if err != nil {
		return nil, err
	}
	gwAddr, err := gw.waitAddr(sctx, filepath.Join(s.dir, "gateway.addr"))
	if err != nil {
		return nil, err
	}
	s.GatewayURL = "http://" + gwAddr + "/"

	if s.prom, err = promstore.Start(ctx, promstore.Options{ScrapeInterval: o.ScrapeInterval, Logger: o.Logger}); err != nil {
		return nil, err
	}
	s.PrometheusURL = s.prom.URL()
	s.prom.AddTarget(promstore.Target{Job: "demo-gateway", Addr: gwAddr})
	for _, name := range s.ProxyNames {
		s.prom.AddTarget(promstore.Target{Job: "demo-shard", Addr: s.ShardAddrs[name]})
	}
	s.prom.AddTarget(promstore.Target{Job: "faultline-proxy", Addr: strings.TrimPrefix(s.ProxyServerURL, "http://")})
	if err := waitHTTP(sctx, s.GatewayURL+"healthz"); err != nil {
		return nil, fmt.Errorf("demo: gateway: %w", err)
	}
	return s, nil
}

func (s *System) start(bin, name string, args ...string) (*child, error) {
	c, err := startChild(name, bin, args...)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s.children = append(s.children, c)
	s.log.Debug("demo process started", "name", name, "pid", c.cmd.Process.Pid)
	return c, nil
}

// startProxies runs `faultline proxy serve` with one proxy per shard and reads the addresses it
// prints (its stable stdout lines).
func (s *System) startProxies(ctx context.Context, bin string, proxyArgs []string) (map[string]string, error) {
	c, err := s.start(bin, "proxy server", append(append([]string{"proxy", "serve"}, proxyArgs...), "--api-address", "127.0.0.1:0")...)
	if err != nil {
		return nil, err
	}
	listen := map[string]string{}
	err = poll(ctx, func() (bool, error) {
		if c.exited() {
			return false, c.failure()
		}
		for _, line := range c.lines() {
			if a, ok := strings.CutPrefix(line, "faultline proxy: API listening on "); ok {
				s.ProxyServerURL = a
			}
			for _, name := range s.ProxyNames {
				if rest, ok := strings.CutPrefix(line, "faultline proxy: "+name+" listening on "); ok {
					listen[name], _, _ = strings.Cut(rest, " ")
				}
			}
		}
		return s.ProxyServerURL != "" && len(listen) == len(s.ProxyNames), nil
	})
	if err != nil {
		return nil, fmt.Errorf("demo: proxy server did not start: %w", err)
	}
	s.ProxyAddrs = listen
	return listen, nil
}

// Pids are the process IDs of the children.
func (s *System) Pids() []int {
	var out []int
	for _, c := range s.children {
		out = append(out, c.cmd.Process.Pid)
	}
	return out
}

// Prometheus is the embedded Prometheus.
func (s *System) Prometheus() *promstore.Server { return s.prom }

// Close stops the children (the gateway first, so that nothing calls a stopped shard), the
// embedded Prometheus, and removes the scratch directory. It is safe to call more than once.
func (s *System) Close() {
	if s.prom != nil {
		_ = s.prom.Close()
		s.prom = nil
	}
	for i := len(s.children) - 1; i >= 0; i-- {
		s.children[i].stop(5 * time.Second)
	}
	s.children = nil
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
}

func waitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	return poll(ctx, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}
