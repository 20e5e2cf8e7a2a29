package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"

	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
)

const p2Prefix = "dl-"

// runP2: Range downloads of the encrypted blob from the OTA server child
// (authenticated, assignment checked) vs http.FileServer serving the same
// file, with the same requests.
func runP2(ctx context.Context, c config, res *Results) error {
	dir := filepath.Join(c.WorkDir, "p2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, c.BlobMiB<<20, 1)
	if err != nil {
		return err
	}
	db := filepath.Join(dir, "devices.db")
	const devices = 64
	if _, err := seed(ctx, db, p2Prefix, devices); err != nil {
		return err
	}
	s, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		return err
	}
	for i := range devices { // an assignment exists exactly when its wrapped key does
		if err := s.PutWrappedKey(ctx, deviceID(p2Prefix, i), fx.BlobDigest, make([]byte, 80)); err != nil {
			return err
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	fixture := "--fixture=" + filepath.Join(dir, "fixture.json")
	ota, err := startChild(dir, "otaserver", "--mode=ota", fixture, "--db="+db)
	if err != nil {
		return err
	}
	defer ota.Stop()
	files, err := startChild(dir, "fileserver", "--mode=files", fixture)
	if err != nil {
		return err
	}
	defer files.Stop()
	rng := int64(c.RangeKiB) << 10
	chunks := (fx.BlobSize + rng - 1) / rng
	spec := func(url string) loadSpec {
		return loadSpec{Workers: c.BlobConns, Warmup: c.Warmup, Duration: c.Duration, Build: func(w int, r *rand.Rand) (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				return nil, err
			}
			off := r.Int64N(chunks) * rng
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, min(off+rng, fx.BlobSize)-1))
			req.Header.Set("Authorization", "Bearer "+deviceToken(p2Prefix, w%devices))
			return req, nil
		}}
	}
	client := newClient(c.BlobConns)
	var otaT, fsT []float64
	for i := range c.Runs {
		f := runLoad(ctx, client, spec("http://"+files.Addr+"/sha256/"+fx.BlobDigest[:2]+"/"+fx.BlobDigest))
		o := runLoad(ctx, client, spec("http://"+ota.Addr+"/v1/blobs/"+fx.BlobDigest))
		if o.Errors > 0 || o.Statuses[http.StatusPartialContent] != o.Requests || f.Statuses[http.StatusPartialContent] != f.Requests {
			return fmt.Errorf("P2 run %d: OTA %v (%d errors), FileServer %v", i+1, o.Statuses, o.Errors, f.Statuses)
		}
		ot, ft := float64(o.Bytes)/c.Duration.Seconds()/(1<<20), float64(f.Bytes)/c.Duration.Seconds()/(1<<20)
		res.raw("P2 run %d: ota %.0f MiB/s (%d ranges), FileServer %.0f MiB/s (%d ranges)", i+1, ot, o.Requests, ft, f.Requests)
		otaT, fsT = append(otaT, ot), append(fsT, ft)
	}
	ratio := median(otaT) / median(fsT)
	res.add(Row{ID: "P2", Measure: fmt.Sprintf("encrypted blob download, %d MiB blob, %d KiB Range requests, %d keep-alive clients", c.BlobMiB, c.RangeKiB, c.BlobConns),
		Figure: fmt.Sprintf("%.0f MiB/s", median(otaT)), Baseline: fmt.Sprintf("http.FileServer, same bytes and ranges: %.0f MiB/s", median(fsT)),
		Ratio: fmt.Sprintf("%.2f", ratio), Target: "≥ 0.9", Result: passIf(ratio >= 0.9),
		Command: fmt.Sprintf("go run ./hack/bench --only=p2 --blob-mib=%d --range-kib=%d --blob-clients=%d --runs=%d", c.BlobMiB, c.RangeKiB, c.BlobConns, c.Runs),
		Notes:   "the OTA side authenticates each request and checks the device's assignment (wrapped-key lookup) before serving"})
	return nil
}
