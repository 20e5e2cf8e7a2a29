package sqlite

import (
	"context"

	"github.com/otaflow/otaflow/internal/devicestore/devindex"
)

// loadIndex reads every device, and which devices have records, into a
// new device index. It runs once at Open, before any request: a full pass
// over the devices table (about 5 s per million devices on two cores).
func (s *Store) loadIndex(ctx context.Context) (*devindex.Index, error) {
	x := devindex.New()
	rows, err := s.r.QueryContext(ctx, deviceRead)
	err = eachRow(rows, err, "load device index", func(row scanner) error {
		d, err := scanDevice(row)
		if err != nil {
			return err
		}
		return x.Put(d)
	})
	if err != nil {
		return nil, err
	}
	rows, err = s.r.QueryContext(ctx, `SELECT DISTINCT device_id FROM records`)
	err = eachRow(rows, err, "load device index", func(row scanner) error {
		var id string
		if err := row.Scan(&id); err != nil {
			return err
		}
		x.MarkRecords(id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}
