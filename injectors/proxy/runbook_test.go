//go:build linux

package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

const runbookHead = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: net}
environment: {name: lab, type: local}
experiments:
  - name: e
    duration: 10s
    faults:
`

func TestRunbookLatencyAndProxyExamples(t *testing.T) {
	doc := runbookHead + `      - latency:
          netns: checkout
          direction: egress
          peers: [10.200.1.2, "fd00:200:1::/64"]
          protocol: tcp
          ports: ["5432", "8000-8100"]
          delay: 50ms
          jitter: 10ms
          distribution: normal
          correlation: 25
          mechanism: auto
      - proxy:
          listen: 127.0.0.1:15432
          upstream: 127.0.0.1:5432
          toxics:
            - latency: {delay: 100ms, jitter: 10ms}
            - bandwidth: {rate: 1MB}
              stream: both
            - reset: {after: 5s}
              toxicity: 0.1
            - blackhole: {timeout: 30s}
              stream: upstream
            - slowClose: {delay: 2s}
`
	rb, err := runbooks.Parse("ok.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	fs := rb.Experiments[0].Faults
	if fs[0].Kind() != "latency" || fs[1].Kind() != "proxy" {
		t.Fatalf("kinds %q %q", fs[0].Kind(), fs[1].Kind())
	}
	l := fs[0].Latency
	if l.Delay.D() != 50*time.Millisecond || l.Jitter.D() != 10*time.Millisecond || l.Netns != "checkout" || len(l.Peers) != 2 {
		t.Fatalf("latency decoded as %+v", l)
	}
	toxics, err := ToxicsFromSpec(fs[1].Proxy.Toxics)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"latency-0: latency 100ms±10ms uniform downstream",
		"bandwidth-1: bandwidth 1MB/s both",
		"reset-2: reset (RST) after 5s on 10% of connections",
		"blackhole-3: blackhole (hold data), close after 30s upstream",
		"slow-close-4: slow close 2s both",
	}
	for i, tx := range toxics {
		if got := tx.Name + ": " + tx.String(); got != want[i] {
			t.Errorf("toxic %d: %q, want %q", i, got, want[i])
		}
	}
}

func TestRunbookValidationPaths(t *testing.T) {
	const f = "experiments[0].faults[0]"
	for _, tc := range []struct {
		name, fault, path, msg string
	}{
		{"no delay", `latency: {netns: a}`, f + ".latency.delay", "is required"},
		{"jitter over delay", `latency: {delay: 10ms, jitter: 20ms}`, f + ".latency.jitter", "must not exceed delay"},
		{"distribution", `latency: {delay: 10ms, jitter: 1ms, distribution: pareto}`, f + ".latency.distribution", "uniform or normal"},
		{"distribution without jitter", `latency: {delay: 10ms, distribution: normal}`, f + ".latency.distribution", "needs jitter"},
		{"correlation range", `latency: {delay: 10ms, jitter: 1ms, correlation: 150}`, f + ".latency.correlation", "between 0 and 100"},
		{"mechanism", `latency: {delay: 10ms, mechanism: ebpf}`, f + ".latency.mechanism", "auto, netem or proxy"},
		{"udp through the proxy", `latency: {delay: 10ms, protocol: udp, mechanism: proxy}`, f + ".latency.protocol", "TCP only"},
		{"bad peer", `latency: {delay: 10ms, peers: [10.0.0.300]}`, f + ".latency.peers[0]", "not a valid IP"},
		{"ports without protocol", `latency: {delay: 10ms, ports: ["80"]}`, f + ".latency.ports", "need protocol"},
		{"listen", `proxy: {listen: nowhere, upstream: 127.0.0.1:5432}`, f + ".proxy.listen", "host:port"},
		{"listen port", `proxy: {listen: "127.0.0.1:0", upstream: 127.0.0.1:5432}`, f + ".proxy.listen", "1 to 65535"},
		{"upstream missing", `proxy: {listen: 127.0.0.1:15432}`, f + ".proxy.upstream", "is required"},
		{"self loop", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:1}`, f + ".proxy.upstream", "must differ"},
		{"toxic without kind", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{stream: upstream}]}`, f + ".proxy.toxics[0]", "exactly one of: latency, bandwidth, reset, blackhole, slowClose"},
		{"toxic with two kinds", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{latency: {delay: 1ms}, reset: {}}]}`, f + ".proxy.toxics[0]", "latency and reset"},
		{"rate", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{latency: {delay: 1ms}}, {bandwidth: {rate: 10mb}}]}`, f + ".proxy.toxics[1].bandwidth.rate", "not a rate"},
		{"stream", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{latency: {delay: 1ms}, stream: sideways}]}`, f + ".proxy.toxics[0].stream", "upstream, downstream or both"},
		{"stream on reset", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{reset: {}, stream: upstream}]}`, f + ".proxy.toxics[0].stream", "whole connection"},
		{"toxicity", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{reset: {}, toxicity: 0}]}`, f + ".proxy.toxics[0].toxicity", "greater than 0"},
		{"slow close delay", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{slowClose: {}}]}`, f + ".proxy.toxics[0].slowClose.delay", "is required"},
		{"toxic latency", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{latency: {delay: 1ms, jitter: 2ms}}]}`, f + ".proxy.toxics[0].latency.jitter", "must not exceed"},
		{"duplicate toxic", `proxy: {listen: 127.0.0.1:1, upstream: 127.0.0.1:2, toxics: [{name: a, reset: {}}, {name: a, reset: {}}]}`, f + ".proxy.toxics[1].name", "duplicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runbooks.Parse("bad.yaml", []byte(runbookHead+"      - "+tc.fault+"\n"))
			var list runbooks.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got %v, want an ErrorList", err)
			}
			for _, fe := range list {
				if fe.Path == tc.path && strings.Contains(fe.Message, tc.msg) {
					if fe.Pos.Line == 0 {
						t.Errorf("%s has no position", fe.Path)
					}
					return
				}
			}
			t.Fatalf("want %s: …%s…; got:\n%v", tc.path, tc.msg, err)
		})
	}
}

func TestParseProxyRate(t *testing.T) {
	for in, want := range map[string]float64{
		"8bit": 1, "100kbit": 12500, "10Mbit": 1.25e6, "1Gbit/s": 1.25e8, "500KB": 5e5, "2MB": 2e6, "1MiB": 1 << 20, "1.5MB/s": 1.5e6,
	} {
		got, err := runbooks.ParseProxyRate(in)
		if err != nil || got != want {
			t.Errorf("ParseProxyRate(%q) = %g, %v; want %g", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10", "10mb", "fast", "-1MB", "0MB", "1bit"} {
		if _, err := runbooks.ParseProxyRate(in); err == nil {
			t.Errorf("ParseProxyRate(%q) accepted", in)
		}
	}
}
