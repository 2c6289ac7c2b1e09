//go:build linux

package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/var/run/netns"

// errNsGone is returned when the target namespace no longer exists (its pod is gone): whatever was
// applied inside it went with it.
var errNsGone = errors.New("network namespace does not exist")

// nsRef names a network namespace: by name (ip netns), by path, or the host's (both empty).
type nsRef struct {
	Name string `json:"netns,omitempty"`
	Path string `json:"netnsPath,omitempty"`
}

func (r nsRef) path() string {
	if r.Path != "" {
		return r.Path
	}
	if r.Name != "" {
		return filepath.Join(netnsDir, r.Name)
	}
	return ""
}

func (r nsRef) String() string {
	switch {
	case r.Name != "":
		return "netns " + r.Name
	case r.Path != "":
		return "netns " + r.Path
	}
	return "host netns"
}

// exists reports whether the namespace is there (the host's always is).
func (r nsRef) exists() (bool, error) {
	p := r.path()
	if p == "" {
		return true, nil
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("%s: %w", r, err)
	}
	return true, nil
}

// do runs fn on an OS thread inside the namespace. Sockets fn creates stay in the namespace;
// goroutines fn starts do not run in it. Commands fn starts are forked from that thread and so
// run in the namespace too.
func (r nsRef) do(fn func() error) error {
	p := r.path()
	if p == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// On failure to return to the original namespace the thread stays locked: the runtime
		// then destroys it with the goroutine instead of reusing it in a foreign namespace.
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(p)
		if err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, fs.ErrNotExist) {
				errc <- fmt.Errorf("%s: %w", r, errNsGone)
				return
			}
			errc <- fmt.Errorf("open %s: %w", r, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter %s: %w", r, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave %s: %w", r, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// run executes a command inside the namespace and returns its standard output.
func (r nsRef) run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	var out []byte
	err := r.do(func() error {
		cmd := exec.CommandContext(ctx, name, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), r, err, strings.TrimSpace(stderr.String()))
		}
		out = stdout.Bytes()
		return nil
	})
	return out, err
}
