package kube

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Shared is one control plane for a whole test package, started lazily by the first test that
// asks for it (a package whose selected tests need no cluster starts none) and stopped by Stop,
// which the package's TestMain calls after m.Run:
//
//	var cluster = &kube.Shared{}
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		cluster.Stop()
//		os.Exit(code)
//	}
//
//	func TestX(t *testing.T) { c := cluster.Get(t); ... }
//
// Tests sharing a cluster must not step on each other: give each its own namespace and nodes.
// Start's rules hold for every caller: without the binaries each test skips, or fails when CI=true;
// a cluster that failed to start fails every test that asks for it.
type Shared struct {
	// Options are passed to Start.
	Options []Option
	// Setup, when set, runs once after the cluster started (e.g. AddNodes); its error fails every
	// test that asks for the cluster.
	Setup func(ctx context.Context, c *Cluster) error

	once  sync.Once
	tb    *packageTB
	c     *Cluster
	skip  string
	fatal string
}

// Get returns the package's cluster, starting it on first use. Call it from the test goroutine.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() {
		dir, err := os.MkdirTemp("", "faultline-kube-")
		if err != nil {
			s.fatal = fmt.Sprintf("shared kubernetes cluster: %v", err)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.tb = &packageTB{dir: dir, ctx: ctx, cancel: cancel}
		s.c, s.skip, s.fatal = s.tb.start(s.Options)
		if s.c != nil && s.Setup != nil {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := s.Setup(sctx, s.c); err != nil {
				s.fatal = fmt.Sprintf("shared kubernetes cluster setup: %v", err)
			}
		}
	})
	switch {
	case s.fatal != "":
		t.Fatal(s.fatal)
	case s.skip != "":
		t.Skip(s.skip)
	}
	return s.c
}

// Stop stops the cluster if it was started and removes its files.
func (s *Shared) Stop() {
	if s.tb != nil {
		s.tb.finish()
	}
}

// packageTB is the testing.TB the shared cluster lives under: its cleanups run at Stop, not at
// the end of the test that happened to start it. Fatal and Skip unwind Start with a panic that
// start turns into a message for every test that asks for the cluster.
type packageTB struct {
	testing.TB // unset: only the methods below are used by Start and Cluster

	dir    string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	temps    int
}

type tbExit struct {
	skip bool
	msg  string
}

func (p *packageTB) start(opts []Option) (c *Cluster, skip, fatal string) {
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(tbExit)
			if !ok {
				panic(r)
			}
			if e.skip {
				skip = e.msg
			} else {
				fatal = e.msg
			}
		}
	}()
	return Start(p, opts...), "", ""
}

func (p *packageTB) finish() {
	p.mu.Lock()
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	p.cancel()
	_ = os.RemoveAll(p.dir)
}

func (p *packageTB) Helper()                  {}
func (p *packageTB) Name() string             { return "shared-kubernetes-cluster" }
func (p *packageTB) Context() context.Context { return p.ctx }
func (p *packageTB) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *packageTB) TempDir() string {
	p.mu.Lock()
	p.temps++
	n := p.temps
	p.mu.Unlock()
	d := fmt.Sprintf("%s/%d", p.dir, n)
	if err := os.MkdirAll(d, 0o700); err != nil {
		p.Fatalf("shared cluster temp dir: %v", err)
	}
	return d
}

func (p *packageTB) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Logf goes to stderr: there is no test to attach it to once the starting test has ended.
func (p *packageTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kube (shared): "+format+"\n", args...)
}
func (p *packageTB) Log(args ...any) { p.Logf("%s", fmt.Sprint(args...)) }

func (p *packageTB) Errorf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	p.Logf(format, args...)
}

func (p *packageTB) Fatalf(format string, args ...any) { p.Fatal(fmt.Sprintf(format, args...)) }
func (p *packageTB) Fatal(args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	panic(tbExit{msg: fmt.Sprint(args...)})
}
func (p *packageTB) Skipf(format string, args ...any) { p.Skip(fmt.Sprintf(format, args...)) }
func (p *packageTB) Skip(args ...any)                 { panic(tbExit{skip: true, msg: fmt.Sprint(args...)}) }

// FailNow is what a testing.TB helper may call after Errorf; it unwinds like Fatal.
func (p *packageTB) FailNow() { p.Fatal("failed") }
