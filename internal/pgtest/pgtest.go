// Package pgtest runs throwaway PostgreSQL servers for tests, from the
// machine's PostgreSQL 15 binaries: initdb into a temporary directory, a
// postmaster listening only on a unix socket there (no port to collide
// with), fsync off. Root may not run PostgreSQL, so as root the server runs
// as nobody (setpriv).
//
// Use Run from TestMain to start one server per test binary; Start then
// gives each test a fresh database on it (dropped at the test's end).
// Without Run, Start starts a server of the test's own.
//
// A missing server fails the test (never skips it): run
// hack/ensure-postgres.sh to install one.
package pgtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir holds the PostgreSQL binaries hack/ensure-postgres.sh
// installs; PGTEST_BIN_DIR overrides it.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

const (
	// The unprivileged user the server runs as when the tests run as root.
	nobodyID = 65534
	// The server's superuser and the port naming its socket file.
	superuser = "otaflow"
	port      = 5432
)

// BinDir is where the PostgreSQL binaries are looked for.
func BinDir() string {
	if d := os.Getenv("PGTEST_BIN_DIR"); d != "" {
		return d
	}
	return DefaultBinDir
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	dir  string // owns the data directory and the socket
	cmd  *exec.Cmd
	exit chan struct{} // closed when the postmaster exited
	log  *os.File

	mu    sync.Mutex // serializes CREATE/DROP DATABASE on admin
	admin *pgx.Conn
	next  atomic.Int64
}

// NewServer initializes and starts a server; Stop removes it.
func NewServer() (*Server, error) {
	return newServerIn("")
}

// NewServerIn is NewServer with the server's directory (data, socket,
// postgres.log) created inside parent instead of the temporary directory,
// for a tool that keeps everything of a run in one place. When running as
// root the server runs as nobody, so parent and its ancestors must be
// searchable by others (mode o+x).
func NewServerIn(parent string) (*Server, error) {
	if parent == "" {
		return nil, errors.New("pgtest: NewServerIn needs a parent directory")
	}
	return newServerIn(parent)
}

func newServerIn(parent string) (*Server, error) {
	bin := BinDir()
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("pgtest: PostgreSQL is not installed (%v): run hack/ensure-postgres.sh (installs postgresql-15), or set PGTEST_BIN_DIR", err)
		}
	}
	sweep()
	// Not t.TempDir: its parents are private to root, and the server may
	// run as nobody.
	dir, err := os.MkdirTemp(parent, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, exit: make(chan struct{})}
	if err := s.start(bin); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

const (
	dirPrefix = "pgtest-"
	ownerFile = "owner.pid" // the test binary's PID
)

// sweep removes the directories of servers whose test binary was killed
// (the server dies with it, see asServerUser, but the files stay): those
// whose owner process is gone, or without an owner and old enough not to
// be one being created.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// asServerUser makes cmd run as nobody when we are root, and die with the
// test binary (a killed test must not leave servers behind) through
// setpriv's parent-death signal: set by setpriv, after its credential
// change, which would clear one set by the Go runtime.
func asServerUser(cmd *exec.Cmd) *exec.Cmd {
	root := os.Geteuid() == 0
	setpriv, err := exec.LookPath("setpriv")
	if err != nil && !root {
		return cmd // no parent-death signal; Stop still stops the server
	}
	var args []string
	if root {
		args = append(args, "--reuid="+strconv.Itoa(nobodyID), "--regid="+strconv.Itoa(nobodyID), "--clear-groups")
	}
	args = append(args, "--pdeathsig=SIGQUIT", "--", cmd.Path)
	c := exec.Command(cmp.Or(setpriv, "setpriv"), append(args, cmd.Args[1:]...)...)
	c.Env, c.Dir, c.Stdout, c.Stderr = cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr
	return c
}

func (s *Server) start(bin string) error {
	data := filepath.Join(s.dir, "data")
	if os.Geteuid() == 0 {
		if err := os.Chown(s.dir, nobodyID, nobodyID); err != nil {
			return fmt.Errorf("pgtest: chown %s: %w", s.dir, err)
		}
	}
	var out bytes.Buffer
	initdb := asServerUser(exec.Command(filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"))
	initdb.Stdout, initdb.Stderr = &out, &out
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if err := initdb.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out.Bytes())
	}
	log, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	s.log = log
	return s.launch(bin)
}

// launch starts the postmaster on the initialized data directory and
// waits until it accepts connections.
func (s *Server) launch(bin string) error {
	data := filepath.Join(s.dir, "data")
	s.exit = make(chan struct{})
	cmd := asServerUser(exec.Command(filepath.Join(bin, "postgres"),
		"-D", data, "-k", s.dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning"))
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	exit := s.exit
	go func() { _ = cmd.Wait(); close(exit) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.dsn("postgres"))
		if err == nil {
			s.admin = conn
			return nil
		}
		select {
		case <-s.exit:
			return fmt.Errorf("pgtest: postgres exited: %s", s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections: %v\n%s", err, s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() []byte {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return b
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", superuser, db, s.dir, port)
}

// NewDatabase creates an empty database and returns its DSN; it is
// dropped when the test ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.next.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.mu.Lock()
	// FILE_COPY: with fsync off, copying template1's few files beats
	// WAL-logging them (the PostgreSQL 15 default).
	_, err := s.admin.Exec(ctx, "CREATE DATABASE "+name+" STRATEGY FILE_COPY")
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		// FORCE: a test that failed may have left connections open.
		if _, err := s.admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.dsn(name)
}

// Halt stops the postmaster (fast shutdown: sessions are terminated with
// SQLSTATE 57P01) but keeps its data, so Resume can start it again; tests
// of how clients live through a database outage use it on a server of
// their own (NewServer), never on the one Run shares.
func (s *Server) Halt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halt()
}

func (s *Server) halt() {
	if s.admin != nil {
		_ = s.admin.Close(context.Background())
		s.admin = nil
	}
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exit:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exit
		}
		s.cmd = nil
	}
}

// Resume starts a halted server again on the same data and socket, and
// waits until it accepts connections.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: server is running")
	}
	return s.launch(BinDir())
}

// Stop stops the server (fast shutdown) and removes its files.
func (s *Server) Stop() {
	s.mu.Lock()
	s.halt()
	s.mu.Unlock()
	if s.log != nil {
		_ = s.log.Close()
	}
	_ = os.RemoveAll(s.dir)
}

// shared is the server Run started for the test binary.
var shared struct {
	srv *Server
	err error
}

// Run starts one server, runs the tests and stops it; call it from
// TestMain as os.Exit(pgtest.Run(m)). When the server does not start, the
// tests still run and every Start fails with the reason.
func Run(m *testing.M) int {
	shared.srv, shared.err = NewServer()
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}

// Start returns the DSN of a fresh, empty database for the test: on the
// server Run started, or else on a server started for this test alone.
func Start(t testing.TB) string {
	t.Helper()
	if shared.srv != nil {
		return shared.srv.NewDatabase(t)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv.NewDatabase(t)
}

// LogPath is the server's log file (removed by Stop).
func (s *Server) LogPath() string { return filepath.Join(s.dir, "postgres.log") }
