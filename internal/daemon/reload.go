package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faultline-dev/faultline/runbooks"
)

// ErrInvalid marks a reload refused because the config or a runbook does not validate (400).
var ErrInvalid = errors.New("invalid")

// ReloadError is a refused reload: the problems, each with its file and position where the
// loader knows them. The config loaded before stays in force.
type ReloadError struct {
	Problems runbooks.ErrorList
	Err      error
}

func (e *ReloadError) Error() string {
	return "the daemon config was not reloaded; the previous one keeps running:\n" + e.Err.Error()
}

// Unwrap makes a ReloadError an ErrInvalid and keeps the loader's error reachable.
func (e *ReloadError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Source string    `json:"source"` // signal, file-watch, api:NAME
	At     time.Time `json:"at"`
	// Added and Changed schedules start (again) with a new next start; a changed schedule's
	// run in progress finishes first. Removed schedules start no more runs; their run in
	// progress finishes.
	Added     []string `json:"added,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	// RunbooksChanged are schedules whose runbook file changed: the next run uses the new one.
	RunbooksChanged []string `json:"runbooksChanged,omitempty"`
	// NeedsRestart names top-level config fields that differ from those the daemon started
	// with; only a restart applies them (the API listener, the ledger, the Lease, history).
	NeedsRestart []string `json:"needsRestart,omitempty"`
}

// Summary is the result in one line, for logs and the audit log.
func (r ReloadResult) Summary() string {
	var parts []string
	for _, p := range []struct {
		name string
		v    []string
	}{{"added", r.Added}, {"removed", r.Removed}, {"changed", r.Changed}, {"runbooks changed", r.RunbooksChanged}, {"needs restart", r.NeedsRestart}} {
		if len(p.v) > 0 {
			parts = append(parts, p.name+": "+strings.Join(p.v, ", "))
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// Reload reads the config file and its runbooks again and, when everything validates, puts the
// new schedules and runbooks in force. A config that does not validate is refused with a
// *ReloadError and changes nothing. Runs in progress are never interrupted (see loopSet).
// source names who asked, for the logs and the result.
func (d *Daemon) Reload(ctx context.Context, source string) (ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	res := ReloadResult{Source: source, At: time.Now().UTC()}
	if d.o.ConfigPath == "" {
		return res, errors.New("reload: the daemon was started without a config file to reload")
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("reload: %w", err)
	}
	// Hashed before reading, so that a change made while loading is seen by the next check.
	d.lastHash = configHash(d.o.ConfigPath)
	lc, err := LoadConfig(d.o.ConfigPath)
	if err != nil {
		d.o.ReloadMetrics.Reloaded(false, res.At)
		rerr := &ReloadError{Err: err}
		errors.As(err, &rerr.Problems)
		d.log.ErrorContext(ctx, "config reload refused; the previous config keeps running", "source", source, "config", d.o.ConfigPath, "err", err)
		return res, rerr
	}

	d.loops.mu.Lock()
	old := d.current()
	res.diff(old, lc)
	d.cfg.Store(lc)
	d.syncLoopsLocked()
	d.loops.mu.Unlock()

	res.NeedsRestart = restartFields(&d.o.Config.Config, &lc.Config)
	d.o.ReloadMetrics.Reloaded(true, res.At)
	d.log.InfoContext(ctx, "config reloaded", "source", source, "config", d.o.ConfigPath, "changes", res.Summary())
	if len(res.NeedsRestart) > 0 {
		d.log.WarnContext(ctx, "config fields changed that only a restart applies; the daemon keeps the values it started with", "fields", res.NeedsRestart)
	}
	return res, nil
}

func (r *ReloadResult) diff(old, cur *LoadedConfig) {
	prev := map[string]int{}
	for i, s := range old.Schedules {
		prev[s.Name] = i
	}
	for _, s := range cur.Schedules {
		i, ok := prev[s.Name]
		switch {
		case !ok:
			r.Added = append(r.Added, s.Name)
		case !reflect.DeepEqual(old.Schedules[i], s):
			r.Changed = append(r.Changed, s.Name)
		default:
			r.Unchanged = append(r.Unchanged, s.Name)
		}
		if ok && !reflect.DeepEqual(old.Runbooks[s.Name], cur.Runbooks[s.Name]) {
			r.RunbooksChanged = append(r.RunbooksChanged, s.Name)
		}
		delete(prev, s.Name)
	}
	for name := range prev {
		r.Removed = append(r.Removed, name)
	}
	slices.Sort(r.Removed)
}

// restartFields lists the top-level fields, schedules aside, in which cur differs from start.
// It walks the struct so that a field added to Config later is covered without a change here.
func restartFields(start, cur *Config) []string {
	sv, cv := reflect.ValueOf(*start), reflect.ValueOf(*cur)
	var out []string
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		if !f.IsExported() || f.Name == "Schedules" {
			continue
		}
		if !reflect.DeepEqual(sv.Field(i).Interface(), cv.Field(i).Interface()) {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			out = append(out, name)
		}
	}
	return out
}

// WatchConfig checks the config file and the runbooks it names every interval and calls reload
// when their content changed since they were last read (by a reload of any source). It polls
// the content rather than waiting for inotify events: a mounted ConfigMap changes by swapping a
// symlink in the directory above the file, on network file systems events do not arrive at all,
// and a few small files read every few seconds cost nothing next to the kubelet's own delay of
// up to a minute in updating the mount. It returns when ctx ends.
func (d *Daemon) WatchConfig(ctx context.Context, interval time.Duration, reload func(ctx context.Context)) {
	if d.o.ConfigPath == "" || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h := configHash(d.o.ConfigPath)
		d.reloadMu.Lock()
		changed := h != d.lastHash
		d.reloadMu.Unlock()
		if changed {
			reload(ctx)
		}
	}
}

// configHash digests the config file and every runbook it names, read as they are now. It
// parses the config leniently, only for the runbook paths: a config that does not validate
// still has a hash, so that it is tried once, refused, and tried again when it changes.
func configHash(path string) string {
	h := sha256.New()
	add := func(p string) {
		b, err := os.ReadFile(p)
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		if err != nil {
			fmt.Fprintf(h, "error: %v\x00", err)
		}
		h.Write(b)
	}
	data, _ := os.ReadFile(path)
	add(path)
	var names struct {
		Schedules []struct {
			Runbook string `yaml:"runbook"`
		} `yaml:"schedules"`
	}
	_ = yaml.Unmarshal(data, &names) // a broken config is hashed by its bytes alone
	for _, s := range names.Schedules {
		if s.Runbook == "" {
			continue
		}
		p := s.Runbook
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		add(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
