package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/injectors/proxyserver"
	"github.com/faultline-dev/faultline/runbooks"
)

// faultlineBinary builds the faultline binary once: the children are its hidden subcommands and
// `faultline proxy serve`, exactly as the demo runs them.
func faultlineBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "faultline")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/faultline-dev/faultline/cmd/faultline").CombinedOutput()
	if err != nil {
		t.Fatalf("build faultline: %v\n%s", err, out)
	}
	return bin
}

// load sends GET requests to url at about rate per second until stop is closed, at most max
// requests, each with a timeout: the test's bounded traffic, on loopback.
func load(url string, rate, maxRequests int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 3 * time.Second}
	sem := make(chan struct{}, 32)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Second / time.Duration(rate))
		defer tk.Stop()
		for range maxRequests {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // 32 outstanding already: skip rather than queue without bound
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				resp, err := client.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
	}()
	return &wg
}

// The whole sample system as child processes: a latency toxic on shard 1 makes the autoscaler
// scale out and back in, an outage of shard 2 opens its breaker (seen in the embedded Prometheus)
// and the breaker closes after the toxic is removed; Close leaves no process and no listener.
func TestSystemReactsToProxyFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes and drives traffic for about a minute")
	}
	bin := faultlineBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sys, err := Start(ctx, Options{Binary: bin, GatewayArgs: []string{
		"--sync-period=500ms", "--scale-down-stabilization=3s", "--breaker-open-for=1s"}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			sys.Close()
		}
	}()
	pids := sys.Pids()
	addrs := []string{strings.TrimPrefix(sys.GatewayURL, "http://"), strings.TrimPrefix(sys.ProxyServerURL, "http://"),
		strings.TrimPrefix(sys.PrometheusURL, "http://")}
	for _, name := range sys.ProxyNames {
		addrs = append(addrs, sys.ShardAddrs[name], sys.ProxyAddrs[name])
	}
	addrs[0] = strings.TrimSuffix(addrs[0], "/")

	pc, err := api.NewClient(api.Config{Address: sys.PrometheusURL})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(pc)
	toxics, err := proxyserver.NewClient(sys.ProxyServerURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := load(sys.GatewayURL, 40, 6000, stop)
	defer func() { close(stop); wg.Wait() }()

	// value waits until the PromQL query returns one sample for which cond holds.
	value := func(what, q string, within time.Duration, cond func(float64) bool) float64 {
		t.Helper()
		qctx, qcancel := context.WithTimeout(ctx, within)
		defer qcancel()
		var last model.Value
		var got float64
		err := poll(qctx, func() (bool, error) {
			v, _, _, err := prom.Query(qctx, q, time.Time{})
			last = v
			if err != nil {
				return false, nil
			}
			vec, ok := v.(model.Vector)
			if !ok || len(vec) != 1 {
				return false, nil
			}
			got = float64(vec[0].Value)
			return cond(got), nil
		})
		if err != nil {
			t.Fatalf("%s: %s never as wanted within %s (last %v)", what, q, within, last)
		}
		t.Logf("%s: %s = %g", what, q, got)
		return got
	}
	set := func(proxy, spec string) {
		t.Helper()
		var ts []runbooks.ProxyToxic
		if err := json.Unmarshal([]byte(spec), &ts); err != nil {
			t.Fatal(err)
		}
		if _, err := toxics.SetToxics(ctx, proxy, "test."+proxy, ts, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	clear := func(proxy string) {
		t.Helper()
		if err := toxics.DeleteToxics(ctx, proxy, "test."+proxy); err != nil {
			t.Fatal(err)
		}
	}

	const desired = `demo_autoscaler_desired_replicas{job="demo-gateway"}`
	value("baseline", desired, time.Minute, func(v float64) bool { return v == 2 })

	set("shard-1", `[{"latency": {"delay": "400ms"}}]`)
	value("latency on shard-1: scale-out", desired, time.Minute, func(v float64) bool { return v > 2 })
	value("latency on shard-1: replicas ready", `demo_autoscaler_current_replicas{job="demo-gateway"}`, time.Minute, func(v float64) bool { return v > 2 })
	clear("shard-1")
	value("latency removed: scale-in", desired, time.Minute, func(v float64) bool { return v == 2 })

	set("shard-2", `[{"reset": {}}]`)
	value("shard-2 out: breaker opens", `max_over_time(gobreaker_state{name="shard-2",state="open"}[2s])`, time.Minute, func(v float64) bool { return v == 1 })
	value("shard-2 out: fallbacks served", `increase(demo_gateway_fallbacks_total{shard="shard-2"}[5s])`, time.Minute, func(v float64) bool { return v > 0 })
	value("shard-2 out: other breakers closed", `sum(gobreaker_state{name=~"shard-1|shard-3",state="closed"})`, 5*time.Second, func(v float64) bool { return v == 2 })
	clear("shard-2")
	value("shard-2 back: breaker closes", `min_over_time(gobreaker_state{name="shard-2",state="closed"}[1s])`, time.Minute, func(v float64) bool { return v == 1 })

	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	sys.Close()
	closed = true
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
			t.Errorf("process %d is still there after Close (%v)", pid, err)
		}
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", a)
		}
	}
}
