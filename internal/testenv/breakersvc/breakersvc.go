// Package breakersvc is a small Go service of real circuit breakers (github.com/sony/gobreaker/v2)
// that exports their state in faultline's gauge convention for Go services, the one the
// recorder's gobreaker preset reads:
//
//	gobreaker_state{name, state="closed|half-open|open"}    1 for the current state, 0 otherwise
//	gobreaker_transitions_total{name, from, to}              one increment per state change
//
// Every transition is also kept with the time OnStateChange saw it: the ground truth the
// recorder's tests and benchmarks compare the recorded timeline with. Tests and the demo use it;
// calls go through Call (or GET /call?name=N&ok=0|1 on Handler).
package breakersvc

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// States as the convention names them (gobreaker's own String() values).
var states = []string{"closed", "half-open", "open"}

// Config shapes every breaker of a Service.
type Config struct {
	// Names of the breakers.
	Names []string
	// Failures is how many consecutive failures open a breaker (default 3).
	Failures uint32
	// OpenFor is how long a breaker stays open before the next call may try it half-open
	// (gobreaker's Timeout; default 1s).
	OpenFor time.Duration
}

// Transition is one state change as OnStateChange saw it.
type Transition struct {
	Name     string
	From, To string
	At       time.Time
}

// Service holds the breakers and their metrics.
type Service struct {
	breakers    map[string]*gobreaker.CircuitBreaker[struct{}]
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec

	mu  sync.Mutex
	log []Transition
}

// ErrFailed is what a failing call returns (a breaker counts it as a failure).
var ErrFailed = errors.New("breakersvc: call failed")

// New makes the breakers, all closed, and registers their metrics on reg.
func New(reg prometheus.Registerer, cfg Config) (*Service, error) {
	if cfg.Failures == 0 {
		cfg.Failures = 3
	}
	if cfg.OpenFor == 0 {
		cfg.OpenFor = time.Second
	}
	s := &Service{
		breakers:    map[string]*gobreaker.CircuitBreaker[struct{}]{},
		state:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gobreaker_state", Help: "Circuit breaker state: 1 for the current state, 0 for the others."}, []string{"name", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobreaker_transitions_total", Help: "Circuit breaker state changes."}, []string{"name", "from", "to"}),
	}
	if err := reg.Register(s.state); err != nil {
		return nil, fmt.Errorf("register gobreaker_state: %w", err)
	}
	if err := reg.Register(s.transitions); err != nil {
		return nil, fmt.Errorf("register gobreaker_transitions_total: %w", err)
	}
	for _, name := range cfg.Names {
		// Every series exists from the start, so that the first increment is seen as growth
		// from zero rather than as a new series.
		for _, st := range states {
			s.state.WithLabelValues(name, st).Set(b2f(st == "closed"))
		}
		for _, p := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}, {"half-open", "open"}} {
			s.transitions.WithLabelValues(name, p[0], p[1])
		}
		s.breakers[name] = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1,
			Timeout:     cfg.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
			OnStateChange: func(name string, from, to gobreaker.State) {
				now := time.Now()
				s.mu.Lock()
				s.log = append(s.log, Transition{Name: name, From: from.String(), To: to.String(), At: now})
				s.mu.Unlock()
				s.state.WithLabelValues(name, from.String()).Set(0)
				s.state.WithLabelValues(name, to.String()).Set(1)
				s.transitions.WithLabelValues(name, from.String(), to.String()).Inc()
			},
		})
	}
	return s, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Call makes one call through breaker name that succeeds when ok. It returns ErrFailed for a
// failed call and gobreaker.ErrOpenState (or ErrTooManyRequests) when the breaker refused it.
func (s *Service) Call(name string, ok bool) error {
	cb := s.breakers[name]
	if cb == nil {
		return fmt.Errorf("breakersvc: no breaker %q", name)
	}
	_, err := cb.Execute(func() (struct{}, error) {
		if !ok {
			return struct{}{}, ErrFailed
		}
		return struct{}{}, nil
	})
	return err
}

// State is the breaker's current state (moving an expired open breaker to half-open, as any
// call would).
func (s *Service) State(name string) string { return s.breakers[name].State().String() }

// Transitions returns every state change so far, in order.
func (s *Service) Transitions() []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Transition(nil), s.log...)
}

// Handler serves GET /call?name=N&ok=1|0: 200 for a successful call, 503 when the breaker
// refused it, 500 for a failed one.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.Call(r.URL.Query().Get("name"), r.URL.Query().Get("ok") != "0")
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}
