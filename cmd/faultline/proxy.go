package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/injectors/proxyserver"
	"github.com/faultline-dev/faultline/internal/auth"
	"github.com/faultline-dev/faultline/runbooks"
)

const (
	proxyServerEnv     = "FAULTLINE_PROXY_SERVER"
	defaultProxyAPI    = "127.0.0.1:8475"
	proxyServeExamples = `
EXAMPLES:
   # Postgres behind a proxy the application uses for good; experiments add toxics to it.
   faultline proxy serve --proxy postgres=0.0.0.0:15432=postgres:5432 \
       --api-address 0.0.0.0:8475 --token-file /etc/faultline/proxy-tokens

   # From a runbook (fault kind proxyToxics), or by hand:
   faultline proxy list --server http://127.0.0.1:8475
   faultline proxy reset --server http://127.0.0.1:8475     # every toxic off, now`
)

func (m *Main) proxyCommand() *cli.Command {
	return &cli.Command{
		Name:  "proxy",
		Usage: "long-lived TCP proxies whose toxics experiments switch on and off (like Toxiproxy)",
		Description: `'faultline proxy serve' runs named TCP proxies in front of dependencies, the way Toxiproxy
is used in a docker-compose golden copy: point the application at the proxy once; between
experiments it passes traffic untouched. A runbook's proxyToxics fault adds latency, a
bandwidth cap, resets, a blackhole or slow closes to one proxy for its window.

The server holds each run's toxics on a lease the run renews. If the run dies, the server
drops its toxics by itself when the lease runs out (default 15s), and 'faultline recover'
drops them at once. A restarted server has no toxics.`,
		Subcommands: []*cli.Command{m.proxyServeCommand(), m.proxyListCommand(), m.proxyResetCommand()},
	}
}

func (m *Main) proxyServeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxies and their API until SIGINT/SIGTERM",
		Description: `Each --proxy is NAME=LISTEN=UPSTREAM (LISTEN and UPSTREAM are host:port). The API serves
GET /v1/proxies, PUT and DELETE /v1/proxies/NAME/toxics/OWNER, DELETE /v1/toxics (every toxic
off), /metrics and /healthz.

Without --token-file every API call is answered without a token, which is allowed only on a
loopback --api-address unless --allow-unauthenticated is given (a private compose network).
The tokens file is the daemon's format: 'TOKEN ROLE NAME' lines, role admin or read-only.
SIGHUP reloads it.
` + proxyServeExamples,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "proxy", Usage: "NAME=LISTEN=UPSTREAM, e.g. postgres=0.0.0.0:15432=postgres:5432 (repeat for more)"},
			&cli.StringFlag{Name: "api-address", Value: defaultProxyAPI, Usage: "where the API listens"},
			&cli.StringFlag{Name: "token-file", Usage: "bearer tokens for the API (TOKEN ROLE NAME lines, the daemon's format)"},
			// The spelling before 0.x agreed on --token-file everywhere; kept so scripts keep working.
			&cli.StringFlag{Name: "tokens-file", Hidden: true},
			&cli.BoolFlag{Name: "allow-unauthenticated", Usage: "serve the API without tokens on a non-loopback address"},
			&cli.DurationFlag{Name: "max-lease", Value: runbooks.MaxToxicLease, Usage: "longest lease a client may ask for"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 5 * time.Second, Usage: "on shutdown, how long open connections may finish"},
		},
		Action: m.proxyServe,
	}
}

// parseProxyFlags reads --proxy NAME=LISTEN=UPSTREAM values.
func parseProxyFlags(vals []string) ([]proxyserver.ProxySpec, error) {
	if len(vals) == 0 {
		return nil, errors.New("no proxies: give at least one --proxy NAME=LISTEN=UPSTREAM, e.g. --proxy postgres=0.0.0.0:15432=postgres:5432")
	}
	out := make([]proxyserver.ProxySpec, 0, len(vals))
	for _, v := range vals {
		f := strings.Split(v, "=")
		if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
			return nil, fmt.Errorf("--proxy %q: want NAME=LISTEN=UPSTREAM, e.g. postgres=0.0.0.0:15432=postgres:5432", v)
		}
		out = append(out, proxyserver.ProxySpec{Name: f[0], Listen: f[1], Upstream: f[2]})
	}
	return out, nil
}

func (m *Main) proxyServe(c *cli.Context) error {
	log, err := m.logger(c)
	if err != nil {
		return err
	}
	specs, err := parseProxyFlags(c.StringSlice("proxy"))
	if err != nil {
		return exitWith(exitInvalid, err)
	}
	apiAddr := c.String("api-address")
	var tokens *auth.Source
	tokenFile := c.String("token-file")
	if tokenFile == "" {
		tokenFile = c.String("tokens-file")
	}
	switch {
	case tokenFile != "":
		if tokens, err = auth.NewSource(tokenFile, log); err != nil {
			return exitWith(exitInvalid, fmt.Errorf("--token-file: %w", err))
		}
	case !c.Bool("allow-unauthenticated") && !loopbackAddr(apiAddr):
		return exitWith(exitInvalid, fmt.Errorf("--api-address %s is not a loopback address: anyone who reaches it could switch toxics on; give --token-file, or --allow-unauthenticated on a private network", apiAddr))
	}
	if c.Duration("max-lease") < runbooks.MinToxicLease {
		return exitWith(exitInvalid, fmt.Errorf("--max-lease must be at least %s", runbooks.MinToxicLease))
	}

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := proxyserver.Open(ctx, specs, c.Duration("max-lease"), log)
	if err != nil {
		if errors.Is(err, proxyserver.ErrInvalid) {
			return exitWith(exitInvalid, err)
		}
		return exitWith(exitAborted, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Duration("drain-timeout"))
		defer cancel()
		if err := srv.Close(dctx); err != nil {
			log.Error("close proxies", "err", err)
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := srv.Register(reg); err != nil {
		return exitWith(exitAborted, fmt.Errorf("register metrics: %w", err))
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", apiAddr)
	if err != nil {
		return exitWith(exitInvalid, fmt.Errorf("--api-address: %w", err))
	}
	hs := &http.Server{Handler: srv.Handler(tokens, reg, log), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	// Stable lines on stdout, whatever the log level: operators and tests read the addresses.
	for _, ps := range srv.Status() {
		fmt.Fprintf(m.Stdout, "faultline proxy: %s listening on %s → %s\n", ps.Name, ps.Listen, ps.Upstream)
	}
	fmt.Fprintf(m.Stdout, "faultline proxy: API listening on http://%s\n", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if tokens == nil {
				continue
			}
			if err := tokens.Reload(); err != nil {
				log.Error("reload API tokens on SIGHUP", "err", err)
			} else {
				log.Info("API tokens reloaded")
			}
			continue
		case err := <-served:
			return exitWith(exitAborted, fmt.Errorf("API server: %w", err))
		case <-ctx.Done():
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Duration("drain-timeout"))
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	return nil
}

func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func proxyClientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", EnvVars: []string{proxyServerEnv}, Value: "http://" + defaultProxyAPI,
			Usage: "the proxy server's API"},
		&cli.StringFlag{Name: "token-file", Usage: "file holding a bearer token for it (default: $" + tokenEnv + ")"},
		&cli.DurationFlag{Name: "request-timeout", Value: 10 * time.Second, Usage: "how long to wait for the API call, a duration such as 10s"},
	}
}

func proxyClient(c *cli.Context) (*proxyserver.Client, error) {
	token := strings.TrimSpace(os.Getenv(tokenEnv))
	if p := c.String("token-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, exitWith(exitInvalid, fmt.Errorf("--token-file: %w", err))
		}
		token = strings.TrimSpace(string(b))
	}
	cl, err := proxyserver.NewClient(c.String("server"), token, nil)
	if err != nil {
		return nil, exitWith(exitInvalid, fmt.Errorf("--server: %w", err))
	}
	return cl, nil
}

// withProxyClient gives a command's action a client from the flags and a context bounded by
// --request-timeout.
func withProxyClient(f func(ctx context.Context, c *cli.Context, cl *proxyserver.Client) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := proxyClient(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.Context, c.Duration("request-timeout"))
		defer cancel()
		return f(ctx, c, cl)
	}
}

func (m *Main) proxyListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list a proxy server's proxies and the toxics on them",
		Flags: append(proxyClientFlags(), &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"}),
		Action: withProxyClient(func(ctx context.Context, c *cli.Context, cl *proxyserver.Client) error {
			ps, err := cl.Proxies(ctx)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			if c.String("output") == "json" {
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(proxyserver.ProxiesResponse{Proxies: ps})
			}
			tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROXY\tLISTEN\tUPSTREAM\tOPEN\tTOXICS")
			for _, p := range ps {
				toxics := "none"
				var parts []string
				for _, set := range p.Toxics {
					parts = append(parts, fmt.Sprintf("%s: %s (until %s)", set.Owner, strings.Join(set.Description, "; "), set.ExpiresAt.Local().Format(time.TimeOnly)))
				}
				if len(parts) > 0 {
					toxics = strings.Join(parts, " | ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", p.Name, p.Listen, p.Upstream, p.Stats.Open, toxics)
			}
			return tw.Flush()
		}),
	}
}

func (m *Main) proxyResetCommand() *cli.Command {
	return &cli.Command{
		Name:  "reset",
		Usage: "remove every toxic from every proxy of a proxy server, now (its kill switch)",
		Description: `Runs whose toxics are removed this way go on until their window ends; their revert then
finds nothing to remove. Use 'faultline halt' to stop the runs themselves.`,
		Flags: proxyClientFlags(),
		Action: withProxyClient(func(ctx context.Context, _ *cli.Context, cl *proxyserver.Client) error {
			n, err := cl.Reset(ctx)
			if err != nil {
				return exitWith(exitAborted, err)
			}
			fmt.Fprintf(m.Stdout, "removed %d toxic set(s)\n", n)
			return nil
		}),
	}
}
