package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/experiments/schedule"
	"github.com/faultline-dev/faultline/runbooks"
)

// Config is `faultline daemon --config FILE`, decoded as strictly as runbooks.
type Config struct {
	APIVersion     string              `yaml:"apiVersion" json:"apiVersion" doc:"Must be faultline.dev/v1alpha1."`
	Kind           string              `yaml:"kind" json:"kind" doc:"Must be DaemonConfig."`
	StateDir       string              `yaml:"stateDir,omitempty" json:"stateDir,omitempty" doc:"Where the file ledger and history live (default: --state-dir)."`
	API            APIConfig           `yaml:"api,omitempty" json:"api,omitempty"`
	History        HistoryConfig       `yaml:"history,omitempty" json:"history,omitempty"`
	Ledger         LedgerConfig        `yaml:"ledger,omitempty" json:"ledger,omitempty"`
	LeaderElection *LeaderElection     `yaml:"leaderElection,omitempty" json:"leaderElection,omitempty" doc:"Run several replicas; only the holder of a Lease schedules. Needs ledger.backend kubernetes."`
	Schedules      []schedule.Schedule `yaml:"schedules" json:"schedules"`

	// dir is the config file's directory; runbook paths are relative to it.
	dir string
}

// APIConfig is the HTTP API (and /metrics, /healthz, /readyz).
type APIConfig struct {
	Address    string `yaml:"address,omitempty" json:"address,omitempty" doc:"Listen address (default 127.0.0.1:8480)."`
	TokensFile string `yaml:"tokensFile,omitempty" json:"tokensFile,omitempty" doc:"Bearer tokens: one 'TOKEN ROLE NAME' per line, role admin or read-only. Without it every API call but /healthz, /readyz is refused."`
	CertFile   string `yaml:"certFile,omitempty" json:"certFile,omitempty"`
	KeyFile    string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	AuditLog   string `yaml:"auditLog,omitempty" json:"auditLog,omitempty" doc:"JSON-lines audit log of every state-changing call (default <stateDir>/audit.log)."`
	// MetricsAuth requires a token for /metrics too.
	MetricsAuth bool `yaml:"metricsAuth,omitempty" json:"metricsAuth,omitempty"`
}

// HistoryConfig bounds the stored results.
type HistoryConfig struct {
	MaxRuns  int               `yaml:"maxRuns,omitempty" json:"maxRuns,omitempty" doc:"Keep at most this many results (default 1000)."`
	MaxAge   runbooks.Duration `yaml:"maxAge,omitempty" json:"maxAge,omitempty" doc:"Drop results older than this (default 2160h, 90 days)."`
	Postgres *PostgresHistory  `yaml:"postgres,omitempty" json:"postgres,omitempty" doc:"Keep history in PostgreSQL, shared by every replica, instead of <stateDir>/history.db (one per replica)."`
}

// PostgresHistory is the shared history store.
type PostgresHistory struct {
	DSNFile string `yaml:"dsnFile" json:"dsnFile" doc:"File holding the connection string (postgres://user:password@host:5432/db?sslmode=verify-full); relative to the config file. Read at start, never logged."`
}

// LedgerConfig chooses where applied faults are recorded.
type LedgerConfig struct {
	Backend   string            `yaml:"backend,omitempty" json:"backend,omitempty" enum:"file,kubernetes" doc:"file (default; <stateDir>/ledger.db) or kubernetes (one ConfigMap per fault, so a new leader can revert what a dead one left)."`
	Namespace string            `yaml:"namespace,omitempty" json:"namespace,omitempty" doc:"Namespace of the ledger objects (kubernetes backend; default: the pod's namespace)."`
	Retention runbooks.Duration `yaml:"retention,omitempty" json:"retention,omitempty" doc:"Delete reverted entries (and claims of scheduled starts) older than this; default 168h. Entries not reverted are never deleted."`
}

// LeaderElection configures the Lease.
type LeaderElection struct {
	Namespace     string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	LeaseName     string            `yaml:"leaseName,omitempty" json:"leaseName,omitempty" doc:"Default faultline-daemon."`
	Identity      string            `yaml:"identity,omitempty" json:"identity,omitempty" doc:"Default: the pod name (POD_NAME) or host name, plus the pid."`
	LeaseDuration runbooks.Duration `yaml:"leaseDuration,omitempty" json:"leaseDuration,omitempty" doc:"Default 15s."`
	RenewDeadline runbooks.Duration `yaml:"renewDeadline,omitempty" json:"renewDeadline,omitempty" doc:"Default 10s."`
	RetryPeriod   runbooks.Duration `yaml:"retryPeriod,omitempty" json:"retryPeriod,omitempty" doc:"Default 2s."`
}

// LoadedConfig is a validated config with its schedules compiled and runbooks loaded.
type LoadedConfig struct {
	Config
	Compiled map[string]*schedule.Compiled
	Runbooks map[string]*runbooks.Runbook // by schedule name
}

// LoadConfig reads, strictly decodes and validates a daemon config; every schedule is compiled
// and every runbook it names is loaded and validated, so a typo fails at start, not at 3 a.m.
func LoadConfig(path string) (*LoadedConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read daemon config: %w", err)
	}
	lc := &LoadedConfig{Compiled: map[string]*schedule.Compiled{}, Runbooks: map[string]*runbooks.Runbook{}}
	lc.dir = filepath.Dir(path)
	err = runbooks.DecodeStrict(path, data, &lc.Config, func() *runbooks.Validator { return lc.validate() })
	if err != nil {
		return nil, err
	}
	lc.applyDefaults()
	return lc, nil
}

func (lc *LoadedConfig) validate() *runbooks.Validator {
	v := &runbooks.Validator{}
	c := &lc.Config
	if c.APIVersion != runbooks.APIVersion {
		v.Errorf("apiVersion", "must be %q, got %q", runbooks.APIVersion, c.APIVersion)
	}
	if c.Kind != "DaemonConfig" {
		v.Errorf("kind", "must be \"DaemonConfig\", got %q", c.Kind)
	}
	if (c.API.CertFile == "") != (c.API.KeyFile == "") {
		v.Errorf("api", "certFile and keyFile go together")
	}
	switch c.Ledger.Backend {
	case "", "file", "kubernetes":
	default:
		v.Errorf("ledger.backend", "must be file or kubernetes, got %q", c.Ledger.Backend)
	}
	if c.LeaderElection != nil && c.Ledger.Backend != "kubernetes" {
		v.Errorf("leaderElection", "needs ledger.backend: kubernetes, so that a new leader can revert what a dead one applied")
	}
	if le := c.LeaderElection; le != nil && le.LeaseDuration > 0 && le.RenewDeadline > 0 && le.RenewDeadline >= le.LeaseDuration {
		v.Errorf("leaderElection.renewDeadline", "must be shorter than leaseDuration")
	}
	if pg := c.History.Postgres; pg != nil {
		if pg.DSNFile == "" {
			v.Errorf("history.postgres.dsnFile", "is required")
		} else if _, err := os.Stat(lc.RunbookPath(pg.DSNFile)); err != nil {
			v.Errorf("history.postgres.dsnFile", "%v", err)
		}
	}
	if len(c.Schedules) == 0 {
		v.Errorf("schedules", "at least one schedule is required")
	}
	for i, s := range c.Schedules {
		p := fmt.Sprintf("schedules[%d]", i)
		if s.Name == "" {
			v.Errorf(p+".name", "is required")
		} else if _, dup := lc.Compiled[s.Name]; dup {
			v.Errorf(p+".name", "duplicate schedule name %q", s.Name)
		}
		comp, err := schedule.Compile(s)
		var ve *schedule.ValidationError
		switch {
		case err == nil:
			lc.Compiled[s.Name] = comp
		case errors.As(err, &ve):
			for _, pr := range ve.Problems {
				v.Errorf(p+"."+pr.Field, "%s", pr.Message)
			}
		default:
			v.Errorf(p, "%v", err)
		}
		if s.Runbook == "" {
			continue // Compile reported it
		}
		rb, err := runbooks.Load(lc.RunbookPath(s.Runbook))
		if err != nil {
			v.Errorf(p+".runbook", "%s does not load:\n%v", s.Runbook, err)
			continue
		}
		lc.Runbooks[s.Name] = rb
	}
	return v
}

// RunbookPath resolves a path (a runbook, a token file) relative to the config file.
func (lc *LoadedConfig) RunbookPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(lc.dir, p)
}

func (lc *LoadedConfig) applyDefaults() {
	c := &lc.Config
	// Paths in the config are relative to the config file, like the runbooks it names, so that a
	// config directory can be moved or mounted as a whole.
	for _, p := range []*string{&c.StateDir, &c.API.TokensFile, &c.API.CertFile, &c.API.KeyFile, &c.API.AuditLog} {
		if *p != "" {
			*p = lc.RunbookPath(*p)
		}
	}
	if pg := c.History.Postgres; pg != nil {
		pg.DSNFile = lc.RunbookPath(pg.DSNFile)
	}
	if c.API.Address == "" {
		c.API.Address = "127.0.0.1:8480"
	}
	if c.History.MaxRuns == 0 {
		c.History.MaxRuns = 1000
	}
	if c.History.MaxAge == 0 {
		c.History.MaxAge = runbooks.Duration(90 * 24 * time.Hour)
	}
	if c.Ledger.Backend == "" {
		c.Ledger.Backend = "file"
	}
	if c.Ledger.Retention == 0 {
		c.Ledger.Retention = runbooks.Duration(7 * 24 * time.Hour)
	}
	if le := c.LeaderElection; le != nil {
		if le.LeaseName == "" {
			le.LeaseName = "faultline-daemon"
		}
		if le.LeaseDuration == 0 {
			le.LeaseDuration = runbooks.Duration(15 * time.Second)
		}
		if le.RenewDeadline == 0 {
			le.RenewDeadline = runbooks.Duration(10 * time.Second)
		}
		if le.RetryPeriod == 0 {
			le.RetryPeriod = runbooks.Duration(2 * time.Second)
		}
	}
}

// ReadDSN reads the PostgreSQL connection string from dsnFile. The error names the file, never
// its content.
func (p *PostgresHistory) ReadDSN() (string, error) {
	data, err := os.ReadFile(p.DSNFile)
	if err != nil {
		return "", fmt.Errorf("history.postgres.dsnFile: %w", err)
	}
	dsn := strings.TrimSpace(string(data))
	if dsn == "" {
		return "", fmt.Errorf("history.postgres.dsnFile: %s is empty", p.DSNFile)
	}
	return dsn, nil
}
