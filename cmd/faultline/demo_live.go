package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// demoLive adds what the demo is about to the status line every half second — the gateway's p95,
// each shard's breaker state and the worker replicas — read from the demo's embedded Prometheus
// like any Prometheus. It returns a function that stops it.
func demoLive(ctx context.Context, ui *statusLine, promURL string) func() {
	client, err := api.NewClient(api.Config{Address: promURL})
	if err != nil {
		return func() {}
	}
	papi := promv1.NewAPI(client)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ui.setExtra(demoFigures(ctx, papi))
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

func demoFigures(ctx context.Context, papi promv1.API) string {
	ctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	query := func(q string) model.Vector {
		v, _, _, err := papi.Query(ctx, q, time.Now())
		if err != nil {
			return nil
		}
		vec, _ := v.(model.Vector)
		return vec
	}
	var parts []string
	if v := query(`histogram_quantile(0.95, sum by (le) (rate(demo_gateway_request_duration_seconds_bucket[2s])))`); len(v) == 1 && !isNaN(float64(v[0].Value)) {
		parts = append(parts, fmt.Sprintf("p95 %s", time.Duration(float64(v[0].Value)*float64(time.Second)).Round(time.Millisecond)))
	}
	var breakers []string
	for _, s := range query(`gobreaker_state{job="demo-gateway"} == 1`) {
		state := string(s.Metric["state"])
		if state != "closed" {
			state = strings.ToUpper(state)
		}
		breakers = append(breakers, fmt.Sprintf("%s %s", s.Metric["name"], state))
	}
	sort.Strings(breakers)
	if len(breakers) > 0 {
		parts = append(parts, "breakers "+strings.Join(breakers, ", "))
	}
	if v := query(`demo_autoscaler_current_replicas{job="demo-gateway"}`); len(v) == 1 {
		parts = append(parts, fmt.Sprintf("replicas %d", int(v[0].Value)))
	}
	return strings.Join(parts, " · ")
}

func isNaN(f float64) bool { return f != f }
