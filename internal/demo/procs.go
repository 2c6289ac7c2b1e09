package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is one process of the sample system.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for

	mu     sync.Mutex
	stdout []string // lines, for the proxy server's addresses
	stderr strings.Builder
}

// startChild starts bin with args. The child is killed if this process dies (Pdeathsig), so that
// even a SIGKILLed demo leaves nothing behind.
func startChild(name, bin string, args ...string) (*child, error) {
	c := &child{name: name, done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.cmd = cmd
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.stdout = append(c.stdout, sc.Text())
			c.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		b, _ := io.ReadAll(io.LimitReader(errOut, 64<<10))
		_, _ = io.Copy(io.Discard, errOut)
		c.mu.Lock()
		c.stderr.Write(b)
		c.mu.Unlock()
	}()
	go func() {
		// Wait only after the pipes are drained (exec's rule).
		wg.Wait()
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// lines returns the stdout lines read so far.
func (c *child) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.stdout...)
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// failure describes an early exit, with the end of the child's stderr.
func (c *child) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := strings.TrimSpace(c.stderr.String())
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	return fmt.Errorf("%s exited early (%v): %s", c.name, c.cmd.ProcessState, msg)
}

// stop asks the child to stop (SIGTERM), kills it after grace, and waits for it.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitAddr waits for the child to write its listen address to path.
func (c *child) waitAddr(ctx context.Context, path string) (string, error) {
	var addr string
	err := poll(ctx, func() (bool, error) {
		if c.exited() {
			return false, c.failure()
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		addr = strings.TrimSpace(string(b))
		return addr != "", err
	})
	if err != nil {
		return "", fmt.Errorf("%s did not start: %w", c.name, err)
	}
	return addr, nil
}

// poll calls cond every 20ms until it is true, returns an error, or ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
