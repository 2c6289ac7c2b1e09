// Command httpd is the test workload of the real test node. As a pod's container it serves HTTP:
// every path answers "<hostname> <remote address>", /healthz answers "ok" (for readiness probes),
// /bytes?n=N answers N bytes (a bulk transfer out of the pod, at most 64 MiB).
// Run by a test inside a pod's network namespace it is the client:
//
//	httpd                                 # serve on $LISTEN (default :8080)
//	httpd probe URL [TIMEOUT]             # GET URL once; prints the body and the time taken; exit 1 on error
//	httpd connects HOST:PORT N TIMEOUT    # N TCP connects, 16 at a time; prints how many succeeded
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "probe" || os.Args[1] == "connects") {
		run := probe
		if os.Args[1] == "connects" {
			run = connects
		}
		if err := run(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx); err != nil {
		slog.Error("httpd", "err", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context) error {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/bytes", bulk)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s\n", host, r.RemoteAddr) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("httpd listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	return nil
}

// maxBulk bounds what /bytes sends, so that a wrong query cannot keep a pod busy for long.
const maxBulk = 64 << 20

func bulk(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > maxBulk {
		http.Error(w, fmt.Sprintf("n must be 0 to %d", maxBulk), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(n))
	chunk := make([]byte, 32<<10)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}

// connects opens N TCP connections to an address, each with its own timeout, at most 16 at a
// time, and prints how many were established.
func connects(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: httpd connects HOST:PORT N TIMEOUT")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 || n > 10000 {
		return fmt.Errorf("connects: N %q must be 1 to 10000", args[1])
	}
	timeout, err := time.ParseDuration(args[2])
	if err != nil {
		return fmt.Errorf("connects timeout: %w", err)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := net.DialTimeout("tcp", args[0], timeout)
			if err == nil {
				ok.Add(1)
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	fmt.Println(ok.Load())
	return nil
}

func probe(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errors.New("usage: httpd probe URL [TIMEOUT]")
	}
	timeout := 5 * time.Second
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return fmt.Errorf("probe timeout: %w", err)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("probe %s: read body: %w", args[0], err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", args[0], resp.Status)
	}
	fmt.Printf("%s%s\n", body, time.Since(began))
	return nil
}
