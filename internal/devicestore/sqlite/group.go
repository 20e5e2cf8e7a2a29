package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// Group commit. With synchronous=FULL every commit costs an fsync of the
// WAL, so one transaction per report caps ingestion at the disk's fsync
// rate. Single-row writes from requests (reports, offers, enrollments,
// running versions, wrapped keys, conflicts) are instead queued to one
// committer goroutine, which runs everything queued so far in one
// transaction — each write inside its own savepoint, so a write that fails
// is undone alone — commits once, and only then answers each caller. A
// caller is therefore acknowledged only after the batch holding its write
// is durable, exactly as with a transaction of its own; while one batch
// commits, the next one queues up, so batches grow with the load.

// defaultMaxBatch bounds the writes in one group transaction (and so the
// latency a write can add to the others in its batch).
const defaultMaxBatch = 256

type writeOp struct {
	ctx   context.Context
	what  string
	fn    func(ctx context.Context, tx *sql.Tx) error
	after func() // runs once the write committed, in commit order
	done  chan error
}

var opPool = sync.Pool{New: func() any { return &writeOp{done: make(chan error, 1)} }}

type committer struct {
	s     *Store
	max   int
	ops   chan *writeOp
	mu    sync.RWMutex // guards closed against send-after-close
	close bool
	done  chan struct{}
}

func newCommitter(s *Store, max int) *committer {
	if max <= 0 {
		max = defaultMaxBatch
	}
	c := &committer{s: s, max: max, ops: make(chan *writeOp, 4*max), done: make(chan struct{})}
	go c.run()
	return c
}

// errClosed answers writes queued after Close.
var errClosed = fmt.Errorf("sqlite: store closed")

// write runs fn in a group transaction and returns once that transaction
// committed (or fn's own error, with fn's writes undone).
func (c *committer) write(ctx context.Context, what string, fn func(context.Context, *sql.Tx) error, after func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := opPool.Get().(*writeOp)
	op.ctx, op.what, op.fn, op.after = ctx, what, fn, after
	c.mu.RLock()
	if c.close {
		c.mu.RUnlock()
		opPool.Put(op)
		return errClosed
	}
	c.ops <- op
	c.mu.RUnlock()
	// Always wait for the answer: the write may already be in a batch, and
	// the op is reused afterwards. A batch is bounded, so this is short.
	err := <-op.done
	op.ctx, op.fn, op.after = nil, nil, nil
	opPool.Put(op)
	return err
}

func (c *committer) stop() {
	c.mu.Lock()
	if !c.close {
		c.close = true
		close(c.ops)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*writeOp, 0, c.max)
	for {
		op, ok := <-c.ops
		if !ok {
			return
		}
		batch = append(batch[:0], op)
	fill:
		for len(batch) < c.max {
			select {
			case op, ok := <-c.ops:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		c.commit(batch)
		clear(batch)
	}
}

// commit runs one batch. The transaction itself does not follow any
// caller's context: callers that gave up still get (and ignore) an answer.
func (c *committer) commit(batch []*writeOp) {
	live := batch[:0]
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	ctx := context.Background()
	if len(live) == 1 {
		op := live[0]
		err := c.s.tx(ctx, op.what, func(tx *sql.Tx) error { return op.fn(context.WithoutCancel(op.ctx), tx) })
		if err == nil && op.after != nil {
			op.after()
		}
		op.done <- err
		return
	}
	errs := make([]error, len(live))
	err := c.s.tx(ctx, "group commit", func(tx *sql.Tx) error {
		for i, op := range live {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
				return fmt.Errorf("sqlite: %s: savepoint: %w", op.what, err)
			}
			errs[i] = op.fn(context.WithoutCancel(op.ctx), tx)
			if errs[i] != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
					return fmt.Errorf("sqlite: %s: rollback to savepoint: %w", op.what, err)
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
				return fmt.Errorf("sqlite: %s: release savepoint: %w", op.what, err)
			}
		}
		return nil
	})
	for i, op := range live {
		switch {
		case err != nil:
			// Nothing of the batch was committed.
			op.done <- err
		default:
			if errs[i] == nil && op.after != nil {
				op.after()
			}
			op.done <- errs[i]
		}
	}
}

// write runs a request's single-row write: grouped with concurrent ones
// unless group commit is off.
func (s *Store) write(ctx context.Context, what string, fn func(context.Context, *sql.Tx) error) error {
	return s.writeThen(ctx, what, fn, nil)
}

// writeThen is write with after run once the write has committed, before
// the caller is answered; writes commit one at a time, so the afters of
// writes to the same device run in commit order (the device index relies
// on it).
func (s *Store) writeThen(ctx context.Context, what string, fn func(context.Context, *sql.Tx) error, after func()) error {
	if s.gc != nil {
		return s.gc.write(ctx, what, fn, after)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.tx(ctx, what, func(tx *sql.Tx) error { return fn(ctx, tx) }); err != nil {
		return err
	}
	if after != nil {
		after()
	}
	return nil
}
