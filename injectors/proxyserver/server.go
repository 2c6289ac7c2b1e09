//go:build linux

package proxyserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/injectors/proxy"
	"github.com/faultline-dev/faultline/runbooks"
)

// ProxySpec is one long-lived proxy.
type ProxySpec struct {
	Name     string
	Listen   string
	Upstream string
}

// Server owns the proxies and the toxic sets their owners hold on them.
type Server struct {
	log      *slog.Logger
	maxLease time.Duration
	met      *serverMetrics

	mu      sync.Mutex
	proxies map[string]*served
	order   []string // names in the order given
	seq     uint64   // orders toxic sets by when they were first put
	closed  bool
}

type served struct {
	spec ProxySpec
	p    *proxy.Proxy
	sets map[string]*ownedSet
}

type ownedSet struct {
	owner   string
	seq     uint64
	specs   []runbooks.ProxyToxic
	toxics  []proxy.Toxic
	expires time.Time
	timer   *time.Timer
	gen     uint64 // bumped each time the lease timer is armed
}

var (
	proxyNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	ownerRE     = regexp.MustCompile(`^[A-Za-z0-9._:@+=-]{1,200}$`)
)

// Open starts every proxy: each listens on its address and connects its clients to its upstream.
// If one cannot listen, those already started are closed and the error names the proxy.
func Open(ctx context.Context, specs []ProxySpec, maxLease time.Duration, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if maxLease <= 0 {
		maxLease = runbooks.MaxToxicLease
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no proxies to serve", ErrInvalid)
	}
	s := &Server{log: log, maxLease: maxLease, proxies: map[string]*served{}, met: newServerMetrics()}
	for _, sp := range specs {
		if err := checkSpec(sp); err != nil {
			return nil, errors.Join(err, s.Close(ctx))
		}
		if _, dup := s.proxies[sp.Name]; dup {
			return nil, errors.Join(fmt.Errorf("%w: proxy %q is given twice", ErrInvalid, sp.Name), s.Close(ctx))
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", sp.Listen)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("proxy %s: listen %s: %w", sp.Name, sp.Listen, err), s.Close(ctx))
		}
		var d net.Dialer
		upstream := sp.Upstream
		p, err := proxy.Start(proxy.Config{
			Listener: ln,
			Dial:     func(ctx context.Context, _ net.Conn) (net.Conn, error) { return d.DialContext(ctx, "tcp", upstream) },
			Logger:   log.With("proxy", sp.Name),
		})
		if err != nil {
			_ = ln.Close()
			return nil, errors.Join(fmt.Errorf("proxy %s: %w", sp.Name, err), s.Close(ctx))
		}
		// The address actually bound (port 0 picks one), so status and tests can find it.
		sp.Listen = p.Addr().String()
		s.proxies[sp.Name] = &served{spec: sp, p: p, sets: map[string]*ownedSet{}}
		s.order = append(s.order, sp.Name)
		log.Info("proxy serving", "proxy", sp.Name, "listen", sp.Listen, "upstream", sp.Upstream)
	}
	return s, nil
}

func checkSpec(sp ProxySpec) error {
	if !proxyNameRE.MatchString(sp.Name) {
		return fmt.Errorf("%w: proxy name %q: letters, digits, '.', '_' and '-' only", ErrInvalid, sp.Name)
	}
	for _, a := range []struct{ what, addr string }{{"listen", sp.Listen}, {"upstream", sp.Upstream}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%w: proxy %s: %s %q is not host:port", ErrInvalid, sp.Name, a.what, a.addr)
		}
	}
	if sp.Listen == sp.Upstream {
		return fmt.Errorf("%w: proxy %s: upstream must differ from listen: it would connect to itself", ErrInvalid, sp.Name)
	}
	return nil
}

// SetToxics replaces what owner holds on the named proxy and (re)starts its lease. Sending the
// same toxics again only renews the lease: open connections keep the toxicity they drew.
func (s *Server) SetToxics(name, owner string, specs []runbooks.ProxyToxic, lease time.Duration) (SetToxicsResponse, error) {
	exp, desc, err := s.setToxics(name, owner, specs, lease)
	return SetToxicsResponse{ExpiresAt: exp, Description: desc}, err
}

func (s *Server) setToxics(name, owner string, specs []runbooks.ProxyToxic, lease time.Duration) (time.Time, []string, error) {
	if !ownerRE.MatchString(owner) {
		return time.Time{}, nil, fmt.Errorf("%w: owner %q: 1-200 of letters, digits and ._:@+=-", ErrInvalid, owner)
	}
	if lease < runbooks.MinToxicLease || lease > s.maxLease {
		return time.Time{}, nil, fmt.Errorf("%w: lease %s must be between %s and %s", ErrInvalid, lease, runbooks.MinToxicLease, s.maxLease)
	}
	if len(specs) == 0 {
		return time.Time{}, nil, fmt.Errorf("%w: no toxics: to remove an owner's toxics, DELETE them", ErrInvalid)
	}
	specs = slices.Clone(specs)
	toxics, err := toxicsFor(owner, specs)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.proxies[name]
	if !ok || s.closed {
		return time.Time{}, nil, fmt.Errorf("%w %q", ErrNotFound, name)
	}
	set := sv.sets[owner]
	renewal := set != nil && reflect.DeepEqual(set.specs, specs)
	if set == nil {
		s.seq++
		set = &ownedSet{owner: owner, seq: s.seq}
		sv.sets[owner] = set
	} else {
		set.timer.Stop()
	}
	set.specs, set.toxics = specs, toxics
	set.expires = time.Now().Add(lease)
	// Each arming has its own generation: a timer that fired just as a renewal took the lock
	// (Stop was too late) finds a newer generation and leaves the renewed set alone.
	set.gen++
	gen := set.gen
	set.timer = time.AfterFunc(lease, func() { s.expire(name, owner, set, gen) })
	if renewal {
		s.met.change(name, "renew")
		return set.expires, describe(toxics), nil
	}
	if err := s.applyLocked(sv); err != nil {
		// Validated above, so the proxy cannot refuse them; if it does, hold nothing.
		set.timer.Stop()
		delete(sv.sets, owner)
		return time.Time{}, nil, errors.Join(err, s.applyLocked(sv))
	}
	s.met.change(name, "set")
	s.log.Info("toxics set", "proxy", name, "owner", owner, "toxics", describe(toxics), "lease", lease)
	return set.expires, describe(toxics), nil
}

// DeleteToxics removes what owner holds on the named proxy. It reports whether there was anything.
func (s *Server) DeleteToxics(name, owner string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.proxies[name]
	if !ok {
		return false, fmt.Errorf("%w %q", ErrNotFound, name)
	}
	set := sv.sets[owner]
	if set == nil {
		return false, nil
	}
	set.timer.Stop()
	delete(sv.sets, owner)
	s.met.change(name, "delete")
	s.log.Info("toxics removed", "proxy", name, "owner", owner)
	return true, s.applyLocked(sv)
}

// Reset removes every toxic of every proxy: the server's kill switch. It returns how many toxic
// sets it removed.
func (s *Server) Reset() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	var errs []error
	for _, name := range s.order {
		sv := s.proxies[name]
		if len(sv.sets) == 0 {
			continue
		}
		for owner, set := range sv.sets {
			set.timer.Stop()
			delete(sv.sets, owner)
			n++
			s.met.change(name, "reset")
		}
		errs = append(errs, s.applyLocked(sv))
	}
	if n > 0 {
		s.log.Warn("every toxic removed (reset)", "sets", n)
	}
	return n, errors.Join(errs...)
}

func (s *Server) expire(name, owner string, set *ownedSet, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.proxies[name]
	if sv == nil || sv.sets[owner] != set || set.gen != gen {
		return
	}
	delete(sv.sets, owner)
	s.met.change(name, "expire")
	s.log.Warn("toxics expired: their owner stopped renewing the lease", "proxy", name, "owner", owner, "expiredAt", set.expires)
	if err := s.applyLocked(sv); err != nil {
		s.log.Error("remove expired toxics", "proxy", name, "owner", owner, "err", err)
	}
}

// ordered lists the proxy's toxic sets oldest first: the order they apply in and are shown in.
func (sv *served) ordered() []*ownedSet {
	sets := make([]*ownedSet, 0, len(sv.sets))
	for _, set := range sv.sets {
		sets = append(sets, set)
	}
	slices.SortFunc(sets, func(a, b *ownedSet) int { return cmp.Compare(a.seq, b.seq) })
	return sets
}

// applyLocked gives the proxy the union of its owners' toxics, oldest set first.
func (s *Server) applyLocked(sv *served) error {
	sets := sv.ordered()
	var all []proxy.Toxic
	for _, set := range sets {
		all = append(all, set.toxics...)
	}
	s.met.sets(sv.spec.Name, len(sets))
	if err := sv.p.SetToxics(all...); err != nil {
		return fmt.Errorf("proxy %s: %w", sv.spec.Name, err)
	}
	return nil
}

// Status lists the proxies in the order they were given.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.statusLocked(s.proxies[name]))
	}
	return out
}

// Proxy returns one proxy's status.
func (s *Server) Proxy(name string) (ProxyStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, ok := s.proxies[name]
	if !ok {
		return ProxyStatus{}, fmt.Errorf("%w %q", ErrNotFound, name)
	}
	return s.statusLocked(sv), nil
}

func (s *Server) statusLocked(sv *served) ProxyStatus {
	st := sv.p.Stats()
	ps := ProxyStatus{
		Name: sv.spec.Name, Listen: sv.spec.Listen, Upstream: sv.spec.Upstream, Toxics: []ToxicSet{},
		Stats: Stats{Accepted: st.Accepted, Proxied: st.Proxied, DialErrors: st.DialErrors, Open: st.Open},
	}
	sets := sv.ordered()
	for _, set := range sets {
		ps.Toxics = append(ps.Toxics, ToxicSet{Owner: set.owner, ExpiresAt: set.expires, Toxics: slices.Clone(set.specs), Description: describe(set.toxics)})
	}
	return ps
}

// Names lists the proxies served.
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// Close removes every toxic and closes every proxy; open connections get until ctx ends to finish.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var ps []*proxy.Proxy
	for _, name := range s.order {
		sv := s.proxies[name]
		for _, set := range sv.sets {
			set.timer.Stop()
		}
		sv.sets = map[string]*ownedSet{}
		ps = append(ps, sv.p)
	}
	s.mu.Unlock()
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// toxicsFor converts and checks an owner's toxic specs. Toxic names are prefixed with the owner
// so that logs and connection views tell whose toxic acted.
func toxicsFor(owner string, specs []runbooks.ProxyToxic) ([]proxy.Toxic, error) {
	// The runbook validator names unnamed toxics; an API client may not have.
	for i := range specs {
		if specs[i].Kind() == "" {
			return nil, fmt.Errorf("toxic %d: set exactly one of latency, bandwidth, reset, blackhole, slowClose", i)
		}
		if specs[i].Name == "" {
			specs[i].Name = fmt.Sprintf("%s-%d", specs[i].Kind(), i)
		}
	}
	if err := runbooks.ValidateToxics(specs); err != nil {
		return nil, err
	}
	ts, err := proxy.ToxicsFromSpec(specs)
	if err != nil {
		return nil, err
	}
	for i := range ts {
		ts[i].Name = owner + "/" + ts[i].Name
	}
	return ts, nil
}

func describe(ts []proxy.Toxic) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}
