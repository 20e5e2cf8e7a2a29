package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
)

// seed creates a fresh store at path with n devices through the store's
// bulk loader, in batches of 50,000 (one transaction each).
func seed(ctx context.Context, path, prefix string, n int) (time.Duration, error) {
	return seedDevices(ctx, path, n, func(i int, now time.Time) devicestore.Device { return benchDevice(prefix, i, now) })
}

// seedDevices is seed with device i made by dev.
func seedDevices(ctx context.Context, path string, n int, dev func(i int, now time.Time) devicestore.Device) (time.Duration, error) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
	start := time.Now()
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	const batch = 50_000
	now := time.Now()
	devs := make([]devicestore.Device, 0, batch)
	for i := 0; i < n; i += batch {
		devs = devs[:0]
		for j := i; j < min(n, i+batch); j++ {
			devs = append(devs, dev(j, now))
		}
		k, err := s.BulkEnroll(ctx, devs)
		if err != nil {
			return 0, err
		}
		if k != len(devs) {
			return 0, fmt.Errorf("bulk enroll inserted %d of %d", k, len(devs))
		}
	}
	if err := s.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
