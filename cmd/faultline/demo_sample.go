package main

import (
	"fmt"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/internal/demo"
	"github.com/faultline-dev/faultline/internal/demo/service"
)

// demoSampleCommand runs one process of the demo's sample system (a shard or the gateway): hidden,
// not for users. Its flags are the service package's own, hence no parsing here.
func (m *Main) demoSampleCommand() *cli.Command {
	return &cli.Command{
		Name:            "demo-sample",
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return service.Main(ctx, c.Args().Slice(), m.Stderr)
		},
	}
}

// demoSystemCommand starts the demo's sample system and prints its addresses until SIGINT: for
// trying runbooks against it by hand. Hidden while `faultline demo` is being rebuilt on it.
func (m *Main) demoSystemCommand() *cli.Command {
	return &cli.Command{
		Name:   "demo-system",
		Hidden: true,
		Action: func(c *cli.Context) error {
			log, err := m.logger(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			sys, err := demo.Start(ctx, demo.Options{Logger: log})
			if err != nil {
				return exitWith(exitAborted, err)
			}
			defer sys.Close()
			fmt.Fprintf(m.Stdout, "gateway:      %s\nproxy server: %s (proxies %s)\nprometheus:   %s\n",
				sys.GatewayURL, sys.ProxyServerURL, strings.Join(sys.ProxyNames, ", "), sys.PrometheusURL)
			<-ctx.Done()
			return nil
		},
	}
}
