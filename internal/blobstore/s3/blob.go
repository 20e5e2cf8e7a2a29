package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/otaflow/otaflow/internal/blobstore"
)

// errStalled is the cause of a transfer cancelled by its watchdog.
var errStalled = errors.New("s3 transfer stalled")

// blob reads an object with ranged GETs. ReadAt is safe for concurrent use;
// Read, Seek and Close are serialized.
type blob struct {
	ctx   context.Context
	store *Store
	key   string
	info  blobstore.Info

	closed atomic.Bool

	mu  sync.Mutex
	pos int64 // offset of the next Read
	st  *stream
	// nextWindow is the length of the next sequential GET: it doubles
	// while reads stay sequential and starts over after a Seek.
	nextWindow int64
	// lastEnd is where the previous stream ended, to tell a sequential
	// continuation from a seek.
	lastEnd int64
}

func newBlob(ctx context.Context, s *Store, info blobstore.Info) *blob {
	return &blob{ctx: ctx, store: s, key: s.key(info.Digest), info: info, lastEnd: -1}
}

func (b *blob) Info() blobstore.Info { return b.info }

// ReadAt fetches exactly the bytes asked for (clipped to the blob) with one
// GET.
func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, b.errf("read", fs.ErrClosed)
	}
	if off < 0 {
		return 0, b.errf("read", errors.New("negative offset"))
	}
	if off >= b.info.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(int64(len(p)), b.info.Size-off)
	st, err := b.open(off, off+n)
	if err != nil {
		return 0, err
	}
	defer st.close()
	got, err := st.readFull(p[:n])
	if err != nil {
		return got, b.errf("read", st.err(err))
	}
	if n < int64(len(p)) {
		return got, io.EOF
	}
	return got, nil
}

// Read streams from the current offset. A failure after the stream has
// delivered data is retried once from where it stopped, so a connection the
// server dropped while the consumer was slow does not fail a long download.
func (b *blob) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, b.errf("read", fs.ErrClosed)
	}
	if b.pos >= b.info.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for attempt := 0; ; attempt++ {
		if b.st == nil {
			if err := b.openWindow(); err != nil {
				return 0, err
			}
		}
		st := b.st
		n, err := st.read(p[:min(int64(len(p)), st.end-st.pos)])
		b.pos += int64(n)
		if st.pos == st.end {
			b.closeStream()
			return n, nil
		}
		if err == nil {
			return n, nil
		}
		b.closeStream()
		if n > 0 {
			return n, nil // the next Read reopens at b.pos
		}
		if attempt == 0 && st.delivered() && b.ctx.Err() == nil {
			continue
		}
		return 0, b.errf("read", st.err(err))
	}
}

// openWindow starts a GET at b.pos. Sequential reads grow the window so
// that a full download needs few requests, while a read after a Seek (what
// http.ServeContent does for a Range request) starts with a small one.
func (b *blob) openWindow() error {
	if b.pos == b.lastEnd {
		b.nextWindow = min(b.nextWindow*2, maxReadWindow)
	} else {
		b.nextWindow = minReadWindow
	}
	end := min(b.pos+b.nextWindow, b.info.Size)
	st, err := b.open(b.pos, end)
	if err != nil {
		return err
	}
	b.st = st
	b.lastEnd = end
	return nil
}

func (b *blob) closeStream() {
	if b.st != nil {
		b.st.close()
		b.st = nil
	}
}

func (b *blob) Seek(offset int64, whence int) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return 0, b.errf("seek", fs.ErrClosed)
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = b.pos + offset
	case io.SeekEnd:
		abs = b.info.Size + offset
	default:
		return 0, b.errf("seek", errors.New("invalid whence"))
	}
	if abs < 0 {
		return 0, b.errf("seek", errors.New("negative position"))
	}
	if abs != b.pos {
		// A stream positioned elsewhere is useless; Read opens a new one.
		b.closeStream()
		b.pos = abs
	}
	return abs, nil
}

func (b *blob) Close() error {
	if b.closed.Swap(true) {
		return b.errf("close", fs.ErrClosed)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeStream()
	return nil
}

func (b *blob) errf(op string, err error) error {
	return fmt.Errorf("%s blob %s: %w", op, b.info.Digest, err)
}

// open sends a GET for [start, end), which must be non-empty.
func (b *blob) open(start, end int64) (*stream, error) {
	ctx, cancel := context.WithCancelCause(b.ctx)
	st := &stream{ctx: ctx, cancel: cancel, start: start, pos: start, end: end}
	st.wd = newWatchdog(b.store.stallTimeout, cancel)
	st.wd.kick()
	var opts minio.GetObjectOptions
	if err := opts.SetRange(start, end-1); err != nil {
		st.close()
		return nil, b.errf("read", err)
	}
	body, oi, _, err := minio.Core{Client: b.store.client}.GetObject(ctx, b.store.bucket, b.key, opts)
	st.wd.pause()
	if err != nil {
		st.close()
		return nil, b.errf("read", st.err(mapErr(ctx, err)))
	}
	st.body = body
	// A server that ignored Range would answer with the whole object; its
	// bytes must not be taken for the range's.
	if oi.Size != end-start {
		st.close()
		return nil, b.errf("read", fmt.Errorf("GET bytes=%d-%d returned %d bytes", start, end-1, oi.Size))
	}
	return st, nil
}

// stream is one ranged GET.
type stream struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wd     *watchdog
	body   io.ReadCloser
	start  int64
	pos    int64 // offset of the next byte of body
	end    int64
}

// read reads from the body with the watchdog armed only while blocked in
// the body, so a slow consumer does not count as a stalled server.
func (s *stream) read(p []byte) (int, error) {
	s.wd.kick()
	n, err := s.body.Read(p)
	s.wd.pause()
	s.pos += int64(n)
	if err == io.EOF && s.pos < s.end {
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (s *stream) readFull(p []byte) (int, error) {
	var got int
	for got < len(p) {
		n, err := s.read(p[got:])
		got += n
		if err != nil {
			return got, err
		}
		if n == 0 && s.pos == s.end {
			break
		}
	}
	return got, nil
}

// delivered reports whether the stream returned any data.
func (s *stream) delivered() bool { return s.pos > s.start }

// err explains a failure caused by the stream's context.
func (s *stream) err(err error) error {
	return ctxErr(s.ctx, err)
}

func (s *stream) close() {
	s.wd.stop()
	if s.body != nil {
		_ = s.body.Close()
	}
	s.cancel(nil)
}

// watchdog cancels a transfer that made no progress for d. It is armed by
// kick and disarmed by pause or stop.
type watchdog struct {
	d time.Duration
	t *time.Timer
}

func newWatchdog(d time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{d: d}
	w.t = time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: no data for %v: %w", errStalled, d, context.DeadlineExceeded))
	})
	w.t.Stop()
	return w
}

func (w *watchdog) kick()  { w.t.Reset(w.d) }
func (w *watchdog) pause() { w.t.Stop() }
func (w *watchdog) stop()  { w.t.Stop() }
