package promstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// Listen is where the HTTP API listens (default 127.0.0.1:0, a free loopback port).
	Listen string
	// ScrapeInterval is how often every target is scraped (default 250ms).
	ScrapeInterval time.Duration
	// Retention bounds the memory: samples older than this are dropped (default 30m).
	Retention time.Duration
	// QueryTimeout bounds one query (default 10s), as Prometheus's --query.timeout does.
	QueryTimeout time.Duration
	Logger       *slog.Logger
}

// Server is the embedded Prometheus: a store, its scrapers, the promql engine and the HTTP API.
type Server struct {
	store    *Store
	engine   *promql.Engine
	interval time.Duration
	client   *http.Client
	log      *slog.Logger
	ln       net.Listener
	hs       *http.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	loops  map[Target]context.CancelFunc
}

// Start listens and serves the API; targets are added with AddTarget. Close stops everything.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 250 * time.Millisecond
	}
	if o.Retention <= 0 {
		o.Retention = 30 * time.Minute
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded prometheus: listen: %w", err)
	}
	s := &Server{
		store:    NewStore(o.Retention.Milliseconds()),
		interval: o.ScrapeInterval,
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}},
		log:      o.Logger,
		ln:       ln,
		loops:    map[Target]context.CancelFunc{},
		engine: promql.NewEngine(promql.EngineOpts{
			Logger:     o.Logger,
			MaxSamples: 5_000_000,
			Timeout:    o.QueryTimeout,
			// Prometheus's defaults, so that queries answer as on a user's server.
			LookbackDelta:        5 * time.Minute,
			EnableAtModifier:     true,
			EnableNegativeOffset: true,
		}),
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.hs = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("embedded prometheus: serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.truncateLoop(o.Retention)
	}()
	return s, nil
}

// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Store is the server's sample store.
func (s *Server) Store() *Store { return s.store }

// AddTarget starts scraping tg (once; adding it again does nothing).
func (s *Server) AddTarget(tg Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.loops[tg]; ok || s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.loops[tg] = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.scrapeLoop(ctx, tg)
	}()
}

// RemoveTarget stops scraping tg; its series are marked stale.
func (s *Server) RemoveTarget(tg Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cancel, ok := s.loops[tg]; ok {
		cancel()
		delete(s.loops, tg)
	}
}

func (s *Server) truncateLoop(retention time.Duration) {
	tick := time.NewTicker(min(retention/10, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			s.store.Truncate(now.UnixMilli())
		}
	}
}

// Close stops the scrapers and the API and waits for them.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	s.client.CloseIdleConnections()
	s.wg.Wait()
	return err
}
