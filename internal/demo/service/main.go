// Package service is the demo's sample sharded system, run as child processes of the faultline
// binary (the hidden `faultline demo-sample` command): shards that answer requests, and a gateway
// with one circuit breaker per shard and an autoscaled worker pool. Every part exports Prometheus
// metrics the way a real service would, so that the demo observes it only through them.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Main runs one role until ctx ends: `--role shard` or `--role gateway`, with that role's flags.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo-sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "shard or gateway")
	listen := fs.String("listen", "127.0.0.1:0", "where to listen")
	addrFile := fs.String("addr-file", "", "file to write the listen address to, once listening")
	shard := shardFlags(fs)
	gw := gatewayFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("role", *role)
	var h http.Handler
	switch *role {
	case "shard":
		h = newShard(shard)
	case "gateway":
		g, err := newGateway(gw, log)
		if err != nil {
			return err
		}
		defer g.close()
		go g.scaler.run(ctx)
		h = g
	default:
		return fmt.Errorf("--role must be shard or gateway, got %q", *role)
	}
	return serve(ctx, *listen, *addrFile, h)
}

// serve listens, publishes the address (written whole, then renamed, so a reader never sees half
// of it) and serves until ctx ends.
func serve(ctx context.Context, listen, addrFile string, h http.Handler) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	if addrFile != "" {
		tmp := addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
			ln.Close()
			return err
		}
		if err := os.Rename(tmp, addrFile); err != nil {
			ln.Close()
			return err
		}
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
