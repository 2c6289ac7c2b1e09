//go:build linux

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// ProxyInjector is the "proxy" fault kind: a listener in front of an upstream, with toxics, for
// the fault window. The listener belongs to this process: Revert closes it; after a crash it died
// with its process and there is nothing left to revert.
type ProxyInjector struct {
	mu   sync.Mutex
	live map[string]*Proxy
}

// NewProxyInjector returns the proxy injector.
func NewProxyInjector() *ProxyInjector { return &ProxyInjector{live: map[string]*Proxy{}} }

// Injectors returns this package's injectors, for the registry.
func Injectors() []injectors.Injector {
	return []injectors.Injector{NewLatencyInjector(), NewProxyInjector()}
}

// Kind implements injectors.Injector.
func (*ProxyInjector) Kind() string { return "proxy" }

type proxyRecord struct {
	ID       string `json:"id"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	// PID is the process that holds (or held) the listener, and Exe its executable, so that a
	// revert from another process can tell whether that listener can still exist.
	PID int    `json:"pid"`
	Exe string `json:"exe,omitempty"`
}

type proxyAction struct {
	inj    *ProxyInjector
	rec    proxyRecord
	toxics []Toxic
	log    *slog.Logger
	lines  []string
}

// Prepare implements injectors.Injector.
func (inj *ProxyInjector) Prepare(_ context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := f.Proxy
	if spec == nil {
		return nil, fmt.Errorf("proxy injector: fault %q is not a proxy fault", f.Name)
	}
	toxics, err := ToxicsFromSpec(spec.Toxics)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", f.Name, err)
	}
	for _, addr := range []string{spec.Listen, spec.Upstream} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("proxy %s: %w", f.Name, err)
		}
	}
	id, err := shortID()
	if err != nil {
		return nil, err
	}
	exe, _ := os.Readlink("/proc/self/exe")
	return &proxyAction{
		inj:    inj,
		rec:    proxyRecord{ID: id, Listen: spec.Listen, Upstream: spec.Upstream, PID: os.Getpid(), Exe: exe},
		toxics: toxics,
		log:    logger(env),
	}, nil
}

// ToxicsFromSpec converts a runbook's toxics.
func ToxicsFromSpec(specs []runbooks.ProxyToxic) ([]Toxic, error) {
	out := make([]Toxic, 0, len(specs))
	for i, s := range specs {
		t := Toxic{Name: s.Name}
		if t.Name == "" {
			t.Name = fmt.Sprintf("%s-%d", s.Kind(), i)
		}
		switch s.Stream {
		case "":
		case "upstream":
			t.Stream = Upstream
		case "downstream":
			t.Stream = Downstream
		case "both":
			t.Stream = Both
		default:
			return nil, fmt.Errorf("toxic %s: unknown stream %q", t.Name, s.Stream)
		}
		if s.Toxicity != nil {
			t.Toxicity = *s.Toxicity
		}
		switch {
		case s.Latency != nil:
			dist := Uniform
			if s.Latency.Distribution == "normal" {
				dist = Normal
			}
			t.Latency = &Latency{Delay: s.Latency.Delay.D(), Jitter: s.Latency.Jitter.D(), Distribution: dist, Correlation: s.Latency.Correlation / 100}
		case s.Bandwidth != nil:
			r, err := runbooks.ParseProxyRate(s.Bandwidth.Rate)
			if err != nil {
				return nil, fmt.Errorf("toxic %s: %w", t.Name, err)
			}
			t.Bandwidth = &Bandwidth{BytesPerSecond: r}
		case s.Reset != nil:
			t.Reset = &Reset{After: s.Reset.After.D()}
		case s.Blackhole != nil:
			t.Blackhole = &Blackhole{Timeout: s.Blackhole.Timeout.D()}
		case s.SlowClose != nil:
			t.SlowClose = &SlowClose{Delay: s.SlowClose.Delay.D()}
		}
		if err := t.Validate(); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Targets implements injectors.Action.
func (a *proxyAction) Targets() []string {
	return []string{fmt.Sprintf("proxy listener %s → upstream %s", a.rec.Listen, a.rec.Upstream)}
}

// Record implements injectors.Action.
func (a *proxyAction) Record() (json.RawMessage, error) {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return nil, fmt.Errorf("encode proxy record: %w", err)
	}
	return b, nil
}

// Apply implements injectors.Action: it opens the listener and starts proxying with the toxics.
func (a *proxyAction) Apply(ctx context.Context, _ injectors.Recorder) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.rec.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return policy.Refusef("target", "cannot listen on %s: the address is in use", a.rec.Listen)
		}
		return fmt.Errorf("proxy listen %s: %w", a.rec.Listen, err)
	}
	var d net.Dialer
	upstream := a.rec.Upstream
	p, err := Start(Config{
		Listener: ln,
		Dial:     func(ctx context.Context, _ net.Conn) (net.Conn, error) { return d.DialContext(ctx, "tcp", upstream) },
		Toxics:   a.toxics,
		Logger:   a.log,
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.inj.mu.Lock()
	a.inj.live[a.rec.ID] = p
	a.inj.mu.Unlock()
	a.lines = []string{fmt.Sprintf("proxy %s → %s (pid %d)", ln.Addr(), upstream, a.rec.PID)}
	if len(a.toxics) == 0 {
		a.lines = append(a.lines, "no toxics: a plain proxy")
	}
	for _, t := range a.toxics {
		a.lines = append(a.lines, fmt.Sprintf("toxic %s: %s", t.Name, t))
	}
	return nil
}

// Describe implements injectors.Describer.
func (a *proxyAction) Describe() []string { return append([]string(nil), a.lines...) }

// Revert implements injectors.Injector. In the process that applied the fault it stops the
// listener (open connections get a short drain, then are closed). From another process there is
// nothing to undo once the applying process is gone: its listener died with it. If that process
// still runs, its listener cannot be closed from here, and Revert says so.
func (inj *ProxyInjector) Revert(ctx context.Context, record json.RawMessage, env injectors.Env) error {
	var rec proxyRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return fmt.Errorf("decode proxy record: %w", err)
	}
	inj.mu.Lock()
	p := inj.live[rec.ID]
	delete(inj.live, rec.ID)
	inj.mu.Unlock()
	if p != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			return fmt.Errorf("close proxy %s: %w", rec.Listen, err)
		}
		return nil
	}
	if rec.PID == 0 || rec.PID == os.Getpid() {
		return nil // never applied here, or already reverted
	}
	if holderAlive(rec) {
		return fmt.Errorf("proxy %s is held by faultline process %d, which is still running: it closes the listener when it reverts or exits", rec.Listen, rec.PID)
	}
	logger(env).Info("proxy revert: nothing to undo, the listener died with its process", "listen", rec.Listen, "pid", rec.PID)
	return nil
}

// holderAlive reports whether the process that opened the listener still runs (the same pid
// running the same executable).
func holderAlive(rec proxyRecord) bool {
	if err := syscall.Kill(rec.PID, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(rec.PID) + "/exe")
	if err != nil {
		return false
	}
	return rec.Exe == "" || exe == rec.Exe
}
