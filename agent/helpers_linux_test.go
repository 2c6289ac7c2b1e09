package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/agent"
	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/internal/testenv/pki"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/prometheus/client_golang/prometheus"
)

func require(t testing.TB) {
	t.Helper()
	netns.Require(t, "iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore")
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// harness is an agent served in-process over mutual TLS on loopback, with a client of it.
type harness struct {
	agent  *agent.Agent
	url    string
	ca     *pki.CA
	client *agentapi.Client
	reg    *prometheus.Registry
	state  string
}

type harnessOpt func(*agent.Config, *agent.HandlerOptions)

func startAgent(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	ca := pki.NewCA(t, "agents")
	srv := ca.Server("agent", []string{agentapi.ServerName})
	cli := ca.Client("run")
	h := &harness{ca: ca, reg: prometheus.NewRegistry(), state: t.TempDir()}
	cfg := agent.Config{NodeName: "test-node", StateDir: h.state, MaxLease: time.Minute, Metrics: h.reg}
	ho := agent.HandlerOptions{RequireCert: true}
	for _, o := range opts {
		o(&cfg, &ho)
	}
	a, err := agent.New(ctxFor(t, time.Minute), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	h.agent = a
	tlsConf, err := agentapi.ServerTLS(ca.CertPEM, srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: a.Handler(ho), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(tls.NewListener(ln, tlsConf)) }()
	t.Cleanup(func() { _ = hs.Close() })
	h.url = "https://" + ln.Addr().String()
	h.client = h.clientWith(t, ca, cli)
	return h
}

// clientWith is a client presenting p (signed by signer), trusting the agent's CA.
func (h *harness) clientWith(t testing.TB, signer *pki.CA, p pki.Pair) *agentapi.Client {
	t.Helper()
	conf, err := agentapi.ClientTLS(h.ca.CertPEM, p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	c := agentapi.NewClient(h.url, conf)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func newID(t testing.TB, prefix string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// partition asks for a partition of everything into and out of the target namespace.
func partition(t testing.TB, target agentapi.Target, lease time.Duration) agentapi.FaultRequest {
	return agentapi.FaultRequest{
		ID: newID(t, "f"), RunID: newID(t, "run"), Owner: "test", Lease: runbooks.Duration(lease),
		Target: target, Fault: runbooks.Fault{Partition: &runbooks.Partition{}},
	}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// snapshot is iptables-save and ip6tables-save of a namespace without comments and counters.
func snapshot(t testing.TB, ns *netns.NS) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Exec(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "## %s\n", cmd)
		for _, line := range strings.Split(string(out), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			b.WriteString(counters.ReplaceAllString(line, "[]") + "\n")
		}
	}
	return b.String()
}

// echoServer accepts connections in ns on addr:0 and echoes; it returns the address.
func echoServer(t testing.TB, ns *netns.NS, addr string) string {
	t.Helper()
	ln, err := ns.ListenTCP(ctxFor(t, 10*time.Second), net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
	return ln.Addr().String()
}

// reach tells whether a round trip from ns to addr completes within 700ms.
func reach(t testing.TB, ns *netns.NS, addr string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(700 * time.Millisecond))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "ping"
}

// eventually polls cond every 50ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

func apiStatus(err error) int {
	var ae *agentapi.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func find(fs []agentapi.Fault, id string) (agentapi.Fault, bool) {
	for _, f := range fs {
		if f.ID == id {
			return f, true
		}
	}
	return agentapi.Fault{}, false
}

// metric sums every series of the named metric.
func (h *harness) metric(t testing.TB, name string) float64 {
	t.Helper()
	fams, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// baseline gives a namespace rules of its own in both families, as a real host has, and returns
// its snapshot: "identical afterwards" then also means "their rules untouched".
func baseline(t testing.TB, ns *netns.NS) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if _, err := ns.Exec(ctx, cmd, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"); err != nil {
			t.Fatal(err)
		}
	}
	return snapshot(t, ns)
}
