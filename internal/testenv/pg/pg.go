// Package pg starts the real PostgreSQL server (Debian package postgresql) for tests: a fresh
// cluster from initdb in a private data directory, listening on a free loopback port only (no
// Unix socket), trust authentication for the test's own connections. It is not the system
// service and touches nothing of it. initdb and postgres refuse to run as root, so under root the
// server runs as the postgres user the package creates.
//
// The server can be stopped and started again (the same port and data), for tests of a database
// that goes away mid-run. Cleanup stops it by PID and removes the data directory. Without the
// binaries the test is skipped, or fails under CI=true. Only tests import this package.
package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinEnv names the directory of initdb and postgres (e.g. /usr/lib/postgresql/15/bin); without
// it the newest version under /usr/lib/postgresql is used.
const BinEnv = "FAULTLINE_PG_BIN"

// Server is a running (or stopped) PostgreSQL cluster.
type Server struct {
	// Addr is host:port.
	Addr string
	// Dir holds the data directory and the server log.
	Dir string

	t       testing.TB
	bin     string
	cred    *syscall.Credential
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	dbCount int
	durable bool
}

func binDir() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return verOf(dirs[i]) > verOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
}

func verOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Option configures Start.
type Option func(*Server)

// Durable keeps fsync on (it is off by default: most tests throw the cluster away), for
// benchmarks whose figures must include what a production server pays per commit.
func Durable() Option { return func(s *Server) { s.durable = true } }

// Start runs initdb and starts the server; t.Cleanup stops it and removes its files.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s := &Server{t: t, bin: bin}
	for _, o := range opts {
		o(s)
	}
	// A directory of its own rather than t.TempDir: the server's user must be able to reach it.
	s.Dir, err = os.MkdirTemp("", "faultline-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(s.Dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := s.command(filepath.Join(bin, "initdb"), "-D", s.data(), "-U", "postgres", "--auth=trust",
		"--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ { // a free port can be taken between probe and bind
		s.Addr = freeAddr(t)
		if err = s.start(); err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *Server) start() error {
	host, port, _ := net.SplitHostPort(s.Addr)
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// fsync off unless Durable: the tests stop the server cleanly or throw the cluster away.
	fsync := "off"
	if s.durable {
		fsync = "on"
	}
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.data(), "-p", port, "-k", "",
		"-c", "listen_addresses="+host, "-c", "fsync="+fsync, "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
			return fmt.Errorf("postgres exited at start:\n%s", log)
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("postgres on %s not accepting connections: %w", s.Addr, err)
		case <-tick.C:
		}
	}
}

// DSN is the connection string of database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=5", s.Addr, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.dbCount++
	name := fmt.Sprintf("t%d", s.dbCount)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return s.DSN(name)
}

// Stop shuts the server down (fast mode: open connections are cut) and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Restart starts a stopped server again on the same address and data.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}
