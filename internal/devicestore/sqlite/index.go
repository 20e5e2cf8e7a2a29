package sqlite

import (
	"context"
	"fmt"

	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

// loadIndex reads every device, and which devices have records, into a
// new device index. It runs once at Open, before any request: a full pass
// over the devices table (about two seconds per million devices).
func (s *Store) loadIndex(ctx context.Context) (*devindex.Index, error) {
	x := devindex.New()
	rows, err := s.r.QueryContext(ctx, deviceRead)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load device index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: load device index: %w", err)
		}
		if err := x.Put(d); err != nil {
			return nil, fmt.Errorf("sqlite: load device index: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: load device index: %w", err)
	}
	recs, err := s.r.QueryContext(ctx, `SELECT DISTINCT device_id FROM records`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: load device index: %w", err)
	}
	defer recs.Close()
	for recs.Next() {
		var id string
		if err := recs.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: load device index: %w", err)
		}
		x.MarkRecords(id)
	}
	if err := recs.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: load device index: %w", err)
	}
	return x, nil
}
