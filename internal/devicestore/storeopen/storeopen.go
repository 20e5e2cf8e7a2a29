// Package storeopen opens the device store a DSN names, so commands take
// one --store-dsn flag whatever the backend:
//
//	sqlite:///var/lib/otaflow/devices.db?synchronous=NORMAL
//	postgres://otaflow@db:5432/otaflow?sslmode=verify-full&pool_max_conns=20&statement_timeout=5s
//
// sqlite: the path is the URL's host and path ("sqlite:///abs/path" or
// "sqlite://relative/path"); synchronous is FULL (default), NORMAL or
// EXTRA. postgres (or postgresql): any pgx connection URL, including
// pgxpool's pool_* parameters; statement_timeout is a duration ("5s") or
// milliseconds ("5000"), default 5s, 0 for none.
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/postgres"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
)

// Open opens (and migrates) the store dsn names.
func Open(ctx context.Context, dsn string) (devicestore.Store, error) {
	t, err := parse(dsn)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case kindSQLite:
		if err := os.MkdirAll(filepath.Dir(t.path), 0o750); err != nil {
			return nil, fmt.Errorf("device store directory: %w", err)
		}
		s, err := sqlite.Open(ctx, t.path, t.sqlite)
		if err != nil {
			return nil, fmt.Errorf("open device store: %w", err)
		}
		return s, nil
	default:
		s, err := postgres.Open(ctx, t.pgDSN, t.postgres)
		if err != nil {
			return nil, fmt.Errorf("open device store: %w", err)
		}
		return s, nil
	}
}

type kind int

const (
	kindSQLite kind = iota + 1
	kindPostgres
)

// target is what a DSN names.
type target struct {
	kind     kind
	path     string // sqlite
	sqlite   sqlite.Options
	pgDSN    string // postgres, without the parameters parsed here
	postgres postgres.Options
}

// parse validates a DSN without touching any database. Its errors never
// quote the DSN: it may hold a password.
func parse(dsn string) (target, error) {
	if strings.TrimSpace(dsn) == "" {
		return target{}, errors.New("store DSN is empty: want sqlite:///path/to/devices.db or postgres://…")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole input
		}
		return target{}, fmt.Errorf("store DSN is not a URL: %w", err)
	}
	switch u.Scheme {
	case "sqlite":
		return parseSQLite(u)
	case "postgres", "postgresql":
		return parsePostgres(u)
	case "":
		return target{}, errors.New("store DSN has no scheme: want sqlite:///path/to/devices.db or postgres://…")
	default:
		return target{}, fmt.Errorf("store DSN: unsupported scheme %q (supported: sqlite, postgres, postgresql)", u.Scheme)
	}
}

func parseSQLite(u *url.URL) (target, error) {
	if u.User != nil {
		return target{}, errors.New("store DSN: sqlite takes no user or password")
	}
	path := u.Host + u.Path
	if path == "" || strings.HasSuffix(path, "/") {
		return target{}, errors.New("store DSN: sqlite:///path/to/devices.db needs a file path")
	}
	t := target{kind: kindSQLite, path: path}
	for k, v := range u.Query() {
		switch k {
		case "synchronous":
			if len(v) != 1 {
				return target{}, errors.New("store DSN: synchronous given more than once")
			}
			t.sqlite.Synchronous = strings.ToUpper(v[0])
			switch t.sqlite.Synchronous {
			case "FULL", "NORMAL", "EXTRA":
			default:
				return target{}, fmt.Errorf("store DSN: synchronous=%q: want FULL, NORMAL or EXTRA", v[0])
			}
		default:
			return target{}, fmt.Errorf("store DSN: unknown sqlite parameter %q (known: synchronous)", k)
		}
	}
	return t, nil
}

func parsePostgres(u *url.URL) (target, error) {
	t := target{kind: kindPostgres}
	q := u.Query()
	if v, ok := q["statement_timeout"]; ok {
		if len(v) != 1 {
			return target{}, errors.New("store DSN: statement_timeout given more than once")
		}
		d, err := parseTimeout(v[0])
		if err != nil {
			return target{}, err
		}
		t.postgres.StatementTimeout = d
		q.Del("statement_timeout")
		u.RawQuery = q.Encode()
	}
	t.pgDSN = u.String()
	// Catches bad pool_* values and the like now, without connecting.
	if _, err := pgxpool.ParseConfig(t.pgDSN); err != nil {
		return target{}, fmt.Errorf("store DSN: %w", err) // pgx redacts the password
	}
	return t, nil
}

// parseTimeout reads a statement timeout as PostgreSQL does (bare numbers
// are milliseconds) or as a Go duration; 0 disables it.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		ms, err2 := strconv.ParseInt(s, 10, 64)
		if err2 != nil {
			return 0, fmt.Errorf("store DSN: statement_timeout=%q: want a duration like 5s or milliseconds", s)
		}
		d = time.Duration(ms) * time.Millisecond
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("store DSN: statement_timeout=%q is negative", s)
	case d == 0:
		return -1, nil // postgres.Options: negative is none
	case d < time.Millisecond:
		return 0, fmt.Errorf("store DSN: statement_timeout=%q is below PostgreSQL's 1ms resolution", s)
	}
	return d, nil
}
