package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/internal/rollout"
)

const p8Prefix = "rep-"

// p8Store seeds devices that were all offered the fixture's release.
func p8Store(ctx context.Context, path string, n int, fx *Fixture) error {
	if _, err := seed(ctx, path, p8Prefix, n); err != nil {
		return err
	}
	s, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		return err
	}
	defer s.Close()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	now := time.Now()
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				r := devicestore.Record{RolloutUID: fx.RolloutUID, DeviceID: deviceID(p8Prefix, i), State: rollout.StateOffered,
					Release: benchNS + "/fw-2", Version: "2.0.0", Blob: fx.BlobDigest, PreviousVersion: runningVer, OfferedAt: now, UpdatedAt: now}
				if err := s.PutRecord(ctx, r, nil); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return s.Close()
}

// runP8: status reports over HTTP into the OTA server child (durable:
// synchronous=FULL, acknowledged after commit), against the same rows
// written straight into SQLite with one transaction per report.
func runP8(ctx context.Context, c config, res *Results) error {
	dir := filepath.Join(c.WorkDir, "p8")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 64<<10, 1)
	if err != nil {
		return err
	}
	client := newClient(c.Workers)
	var seq atomic.Int64
	spec := func(addr string) loadSpec {
		url := "http://" + addr + "/v1/status"
		return loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: func(w int, rng *rand.Rand) (*http.Request, error) {
			i := rng.IntN(c.P8Devices)
			body := fmt.Sprintf(`{"reportID":"r-%d","rollout":%q,"state":"downloading","progress":%d}`, seq.Add(1), fx.RolloutKey, rng.IntN(100))
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(body))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+deviceToken(p8Prefix, i))
			return req, nil
		}}
	}
	// One server child per variant, each on its own fresh store.
	variant := func(name string, extra ...string) ([]float64, []float64, string, error) {
		db := filepath.Join(dir, name+".db")
		if err := p8Store(ctx, db, c.P8Devices, fx); err != nil {
			return nil, nil, "", err
		}
		args := append([]string{"--mode=ota", "--fixture=" + filepath.Join(dir, "fixture.json"), "--db=" + db, "--device-rate=1000", "--device-burst=1000"}, extra...)
		ch, err := startChild(dir, name, args...)
		if err != nil {
			return nil, nil, "", err
		}
		defer ch.Stop()
		var rps, p99 []float64
		for i := range c.Runs {
			o := runLoad(ctx, client, spec(ch.Addr))
			if o.Errors > 0 || o.Statuses[200] != o.Requests {
				return nil, nil, "", fmt.Errorf("P8 %s run %d: statuses %v, %d errors", name, i+1, o.Statuses, o.Errors)
			}
			res.raw("P8 %s run %d: %.0f reports/s p50 %s p99 %s", name, i+1, o.RPS, o.P50, o.P99)
			rps, p99 = append(rps, o.RPS), append(p99, ms(o.P99))
		}
		prof := ""
		if c.Profile > 0 && name == "grouped" {
			prof = filepath.Join(dir, "p8-cpu.pprof")
			if err := profileDuring(ctx, client, ch, spec(ch.Addr), c.Profile, prof); err != nil {
				return nil, nil, "", err
			}
		}
		return rps, p99, prof, nil
	}
	// Baseline: the rows of one report (report-ID check, record read,
	// record upsert, fleet pin, conflict clear, report ID insert), one
	// transaction each, synchronous=FULL, the same number of concurrent
	// writers, straight through database/sql.
	baseDB := filepath.Join(dir, "baseline.db")
	if err := p8Store(ctx, baseDB, c.P8Devices, fx); err != nil {
		return err
	}
	var base []float64
	for i := range c.Runs {
		r, err := rawReportRate(ctx, baseDB, c, fx)
		if err != nil {
			return err
		}
		res.raw("P8 baseline run %d: %.0f reports/s (raw SQLite, one transaction per report)", i+1, r)
		base = append(base, r)
	}
	g, gp99, prof, err := variant("grouped")
	if err != nil {
		return err
	}
	n, np99, _, err := variant("ungrouped", "--no-group-commit")
	if err != nil {
		return err
	}
	cmd := fmt.Sprintf("go run ./hack/bench --only=p8 --clients=%d --p8-devices=%d --runs=%d --duration=%s", c.Workers, c.P8Devices, c.Runs, c.Duration)
	res.add(Row{ID: "P8", Measure: fmt.Sprintf("status reports ingested/s over HTTP, durable (synchronous=FULL) before the 200, %d clients, group commit", c.Workers),
		Figure:   fmt.Sprintf("%.0f reports/s, p99 %.1f ms", median(g), median(gp99)),
		Baseline: fmt.Sprintf("raw SQLite, same rows, 1 transaction per report: %.0f/s", median(base)),
		Ratio:    fmt.Sprintf("%.2f", median(g)/median(base)), Target: "report the ratio", Result: "info",
		Command: cmd, Notes: "per-device rate limit raised to 1000/s in this server child so the limiter does not cap it"})
	res.add(Row{ID: "P8n", Measure: "P8 with group commit off (one transaction and fsync per report, as before)",
		Figure:   fmt.Sprintf("%.0f reports/s, p99 %.1f ms", median(n), median(np99)),
		Baseline: fmt.Sprintf("%.0f/s", median(base)), Ratio: fmt.Sprintf("%.2f", median(n)/median(base)), Result: "info", Command: cmd})
	if prof != "" {
		res.Profiles = append(res.Profiles, Profile{Name: "P8 status reports, CPU (server child, group commit)", File: prof, Top: pprofTop(prof)})
	}
	return nil
}

// baselineSeq numbers baseline report IDs across runs on the same store.
var baselineSeq atomic.Int64

func rawReportRate(ctx context.Context, path string, c config, fx *Fixture) (float64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	stmts := map[string]*sql.Stmt{}
	for k, q := range map[string]string{
		"seen":   `SELECT 1 FROM reports WHERE device_id = ? AND report_id = ?`,
		"rec":    `SELECT state, wave FROM records WHERE rollout_uid = ? AND device_id = ?`,
		"up":     `UPDATE records SET state = ?, updated_at = ? WHERE rollout_uid = ? AND device_id = ?`,
		"pin":    `INSERT INTO fleet (rollout_uid, device_id, rank, wave, pinned) VALUES (?, ?, ?, ?, 1) ON CONFLICT (rollout_uid, device_id) DO UPDATE SET wave = excluded.wave, pinned = 1`,
		"nocf":   `DELETE FROM conflicts WHERE rollout_uid = ? AND device_id = ?`,
		"report": `INSERT INTO reports (device_id, report_id, at) VALUES (?, ?, ?)`,
	} {
		if stmts[k], err = db.PrepareContext(ctx, q); err != nil {
			return 0, err
		}
	}
	var done atomic.Int64
	seq := &baselineSeq
	start := time.Now()
	measureFrom, end := start.Add(c.Warmup), start.Add(c.Warmup+c.Duration)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range c.Workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				id := deviceID(p8Prefix, rng.IntN(c.P8Devices))
				err := func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					rid := fmt.Sprintf("b-%d", seq.Add(1))
					var one int
					if err := tx.Stmt(stmts["seen"]).QueryRowContext(ctx, id, rid).Scan(&one); err != sql.ErrNoRows {
						return fmt.Errorf("report seen: %v", err)
					}
					var st string
					var wave int
					if err := tx.Stmt(stmts["rec"]).QueryRowContext(ctx, fx.RolloutUID, id).Scan(&st, &wave); err != nil {
						return err
					}
					now := time.Now().UnixNano()
					if _, err := tx.Stmt(stmts["up"]).ExecContext(ctx, "downloading", now, fx.RolloutUID, id); err != nil {
						return err
					}
					rank := int64(rollout.Rank(fx.RolloutUID, id) ^ 1<<63)
					if _, err := tx.Stmt(stmts["pin"]).ExecContext(ctx, fx.RolloutUID, id, rank, wave); err != nil {
						return err
					}
					if _, err := tx.Stmt(stmts["nocf"]).ExecContext(ctx, fx.RolloutUID, id); err != nil {
						return err
					}
					if _, err := tx.Stmt(stmts["report"]).ExecContext(ctx, id, rid, now); err != nil {
						return err
					}
					return tx.Commit()
				}()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if !t0.Before(measureFrom) {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(done.Load()) / c.Duration.Seconds(), nil
}
