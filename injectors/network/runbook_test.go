package network_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/runbooks"
)

const runbookHead = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata:
  name: network-faults
environment:
  name: lab
  type: local
experiments:
  - name: cut
    duration: 30s
    faults:
`

// TestRunbookExamplesAreValid holds one example of each kind, as a runbook author writes it.
func TestRunbookExamplesAreValid(t *testing.T) {
	faults := `      - partition:
          netns: app-1
          direction: both
          peers: [10.0.2.0/24, "fd00:2::/64"]
      - reject:
          netnsPath: /proc/4242/ns/net
          direction: egress
          peers: [10.0.3.7]
          protocol: tcp
          ports: ["5432", "8000-8100"]
          with: tcp-reset
      - loss:
          netns: app-1
          probability: 0.3
          protocol: udp
          ports: ["53"]
      - shardIsolation:
          shard: orders-3
          netns: orders-3
          peers: [10.0.4.0/24, 10.0.5.0/24]
          protocol: tcp
          ports: ["6379"]
      - bandwidth:
          netns: app-1
          interface: eth0
          rate: 10mbit
          burst: 32kb
          latency: 50ms
`
	rb, err := runbooks.Parse("ok.yaml", []byte(runbookHead+faults))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, f := range rb.Experiments[0].Faults {
		kinds = append(kinds, f.Kind())
	}
	if got := strings.Join(kinds, ","); got != "partition,reject,loss,shard-isolation,bandwidth" {
		t.Fatalf("kinds %s", got)
	}
}

func TestRunbookValidation(t *testing.T) {
	for _, c := range []struct {
		fault string // YAML of one fault; the line holding "<<" is where the error must point
		path  string
		msg   string
	}{
		{"      - loss:\n          probability: 1.5 #<<\n", "experiments[0].faults[0].loss.probability", "at most 1"},
		{"      - loss:\n          probability: -0.1 #<<\n", "experiments[0].faults[0].loss.probability", "more than 0"},
		{"      - loss: #<<\n          protocol: udp\n", "experiments[0].faults[0].loss.probability", "more than 0"},
		{"      - partition:\n          peers:\n            - 10.0.0.0/8\n            - 10.0.0.300/24 #<<\n", "experiments[0].faults[0].partition.peers[1]", "not a valid CIDR"},
		{"      - partition:\n          peers: [not-an-ip] #<<\n", "experiments[0].faults[0].partition.peers[0]", "not a valid IP"},
		{"      - partition:\n          protocol: tcp\n          ports: [\"70000\"] #<<\n", "experiments[0].faults[0].partition.ports[0]", "not a port"},
		{"      - partition:\n          protocol: tcp\n          ports: [\"90-80\"] #<<\n", "experiments[0].faults[0].partition.ports[0]", "not a port"},
		{"      - partition:\n          ports: [\"80\"] #<<\n", "experiments[0].faults[0].partition.ports", "protocol tcp or udp"},
		{"      - partition:\n          direction: sideways #<<\n", "experiments[0].faults[0].partition.direction", "egress, ingress or both"},
		{"      - reject:\n          with: icmp-host-prohibited #<<\n", "experiments[0].faults[0].reject.with", "tcp-reset or icmp-port-unreachable"},
		{"      - reject:\n          protocol: udp\n          with: tcp-reset #<<\n", "experiments[0].faults[0].reject.with", "only refuses TCP"},
		{"      - shardIsolation: #<<\n          peers: [10.0.0.1]\n", "experiments[0].faults[0].shardIsolation.shard", "is required"},
		{"      - shardIsolation: #<<\n          shard: s1\n", "experiments[0].faults[0].shardIsolation.peers", "list the addresses"},
		{"      - shardIsolation:\n          shard: s1\n          peers: [10.0.0.1]\n          direction: egress #<<\n", "experiments[0].faults[0].shardIsolation.direction", "both ways"},
		{"      - bandwidth:\n          interface: eth0\n          rate: \"10\" #<<\n", "experiments[0].faults[0].bandwidth.rate", "not a rate"},
		{"      - bandwidth:\n          interface: eth0\n          rate: 10 mbit/s #<<\n", "experiments[0].faults[0].bandwidth.rate", "not a rate"},
		{"      - bandwidth: #<<\n          rate: 1gbit\n", "experiments[0].faults[0].bandwidth.interface", "is required"},
		{"      - bandwidth:\n          interface: eth0\n          rate: 500kbit\n          burst: lots #<<\n", "experiments[0].faults[0].bandwidth.burst", "not a size"},
		{"      - bandwidth:\n          interface: eth0\n          rate: 500kbit\n          limit: 64kb\n          latency: 20ms #<<\n", "experiments[0].faults[0].bandwidth.latency", "exclusive"},
		{"      - bandwidth:\n          netns: a/b #<<\n          interface: eth0\n          rate: 1mbit\n", "experiments[0].faults[0].bandwidth.netns", "not a namespace name"},
	} {
		src := runbookHead + c.fault
		_, err := runbooks.Parse("bad.yaml", []byte(src))
		var list runbooks.ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("%s: got %v, want an ErrorList", c.path, err)
		}
		wantLine := 0
		for i, line := range strings.Split(src, "\n") {
			if strings.Contains(line, "#<<") {
				wantLine = i + 1
			}
		}
		var found *runbooks.FieldError
		for _, fe := range list {
			if fe.Path == c.path {
				found = fe
			}
		}
		if found == nil {
			t.Errorf("no error at %s; got:\n%v", c.path, err)
			continue
		}
		if !strings.Contains(found.Message, c.msg) || found.Pos.Line != wantLine || found.File != "bad.yaml" {
			t.Errorf("%s: got %q, want line %d and a message with %q", c.path, found.Error(), wantLine, c.msg)
		}
	}
}

func TestParseRateAndSize(t *testing.T) {
	for s, want := range map[string]uint64{"10mbit": 10e6, "1gbit": 1e9, "500kbit": 500e3, "1.5Mbit": 1.5e6, "100kbps": 800e3, "1mibit": 1 << 20} {
		if got, err := runbooks.ParseRate(s); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "10", "mbit", "-1mbit", "0kbit", "10 parsecs", "NaNmbit"} {
		if _, err := runbooks.ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) accepted", s)
		}
	}
	for s, want := range map[string]uint32{"1500": 1500, "32kb": 32 << 10, "1mb": 1 << 20, "10k": 10 << 10, "64b": 64} {
		if got, err := runbooks.ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "lots", "0", "-5kb", "5tb"} {
		if _, err := runbooks.ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}
