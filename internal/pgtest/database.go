package pgtest

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
)

// databaseName is what CreateDatabase accepts: a plain lower-case
// identifier, never one of the server's own databases.
var databaseName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates an empty database named name on the server and
// returns its DSN, for programs that are not tests (benchmarks, tools);
// tests use Start or NewDatabase, which drop theirs at the test's end.
// The database lives until DropDatabase or Stop.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := checkDatabaseName(name); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return "", fmt.Errorf("pgtest: create database %s: server is not running", name)
	}
	// FILE_COPY, as NewDatabase.
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" STRATEGY FILE_COPY"); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.dsn(name), nil
}

// DropDatabase drops a database CreateDatabase made, closing any
// connection still open to it.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := checkDatabaseName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return fmt.Errorf("pgtest: drop database %s: server is not running", name)
	}
	if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

func checkDatabaseName(name string) error {
	switch {
	case !databaseName.MatchString(name):
		return fmt.Errorf("pgtest: database name %q: want a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)", name)
	case name == "postgres" || name == "template0" || name == "template1":
		return fmt.Errorf("pgtest: database name %q is the server's own", name)
	}
	return nil
}

// PID is the postmaster's process ID (0 when the server is halted); the
// server's other processes (backends, background workers) are its
// children, for programs that account for the server's CPU time.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
