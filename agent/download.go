package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/vendorsig"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// errShortBody is a blob response that ended early: a network problem,
// retried with the progress kept, never a tampering verdict.
var errShortBody = errors.New("blob download interrupted")

// plainCheck collects what is checked over the plaintext: its SHA-256, and
// the vendor signature when there is one. The plaintext is hashed with
// SHA-256 once: by the vendor check when there is one, else by sum.
type plainCheck struct {
	sum   hash.Hash        // nil when check is set
	check *vendorsig.Check // nil when there is no signature to verify
}

func (p *plainCheck) Write(b []byte) (int, error) {
	if p.check != nil {
		return p.check.Write(b)
	}
	return p.sum.Write(b)
}

// sha256 returns the SHA-256 of the plaintext written so far.
func (p *plainCheck) sha256() []byte {
	if p.check != nil {
		return p.check.SHA256()
	}
	return p.sum.Sum(nil)
}

func (a *Agent) newPlainCheck(vendorSig string) (*plainCheck, error) {
	unchecked := &plainCheck{sum: sha256.New()}
	if vendorSig == "" {
		if !a.cfg.AllowUnsigned {
			return nil, refuse(RefuseVendorSignature, "vendor signature not verified: the assignment carries no vendor signature and unsigned images are not allowed")
		}
		return unchecked, nil
	}
	if len(a.vendor) == 0 { // AllowUnsigned without keys: nothing to check with
		return unchecked, nil
	}
	sig, err := vendorsig.ParseSignature(vendorSig)
	if err != nil {
		return nil, refuse(RefuseVendorSignature, "vendor signature not verified: %v", err)
	}
	check, err := vendorsig.NewCheck(sig, a.vendor)
	if err != nil {
		return nil, refuse(RefuseVendorSignature, "vendor signature not verified: %v", err)
	}
	return &plainCheck{check: check}, nil
}

// download fetches, decrypts and verifies the work's blob into the
// staging area, resuming after the last durably staged chunk. Refusals
// (tampering, wrong key, digest or signature mismatch) are *Refusal; any
// other error is transient and keeps the progress.
func (a *Agent) download(ctx context.Context, w *Work) (Image, error) {
	asg := w.Assignment
	raw, err := hex.DecodeString(asg.EncryptedSHA256)
	if err != nil || len(raw) != 32 {
		return Image{}, refuse(RefuseMalformed, "assignment has a bad encryptedSHA256")
	}
	key, err := keywrap.Unwrap(keywrap.KEM(asg.KEM), a.key, asg.WrappedKey, [32]byte(raw), a.cfg.DeviceID)
	if err != nil {
		return Image{}, refuse(RefuseUnwrap, "content key does not unwrap with this device's key: %v", err)
	}
	pc, err := a.newPlainCheck(asg.VendorSignature)
	if err != nil {
		return Image{}, err
	}
	stage, kept, err := a.cfg.Staging.Begin(asg.PlainSHA256, w.Bytes)
	if err != nil {
		return Image{}, err
	}
	defer stage.Close()
	if kept != w.Bytes {
		w.Chunks, w.Bytes = 0, 0
	}
	if err := stage.Replay(pc); err != nil {
		return Image{}, fmt.Errorf("replay staged image: %w", err)
	}

	if w.Bytes < asg.PlainSize || (asg.PlainSize == 0 && w.Chunks == 0) {
		if err := a.fetch(ctx, w, key, stage, pc); err != nil {
			return Image{}, err
		}
	}
	if w.Bytes != asg.PlainSize {
		return Image{}, refuse(RefusePlainDigest, "image is %d bytes, the assignment says %d", w.Bytes, asg.PlainSize)
	}
	if got := hex.EncodeToString(pc.sha256()); got != asg.PlainSHA256 {
		return Image{}, refuse(RefusePlainDigest, "image SHA-256 is %s, the assignment says %s", got, asg.PlainSHA256)
	}
	if pc.check != nil {
		if _, err := pc.check.Verify(); err != nil {
			return Image{}, refuse(RefuseVendorSignature, "vendor signature not verified: %v", err)
		}
	}
	if err := stage.Sync(); err != nil {
		return Image{}, err
	}
	return Image{
		Release: asg.Release, Version: asg.Version, SecurityVersion: asg.SecurityVersion,
		SHA256: asg.PlainSHA256, Size: asg.PlainSize, Path: stage.Path(), Rollback: asg.Rollback,
	}, nil
}

// fetch requests the blob from the first chunk not yet staged and
// verifies chunks into stage until the end.
func (a *Agent) fetch(ctx context.Context, w *Work, key []byte, stage Stage, pc *plainCheck) error {
	asg := w.Assignment
	var h envelope.Header
	haveHeader := len(w.Header) == envelope.HeaderSize
	if haveHeader {
		var err error
		if h, err = envelope.ParseHeader(w.Header); err != nil {
			haveHeader = false
		}
	}
	if !haveHeader {
		w.Chunks, w.Bytes = 0, 0
	}
	offset := int64(0)
	if haveHeader {
		offset = envelope.ChunkOffset(h, w.Chunks)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, resp, err := a.getBlob(ctx, w, offset)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && offset > 0 {
		// The server sent the whole blob (If-Range did not match): start
		// over from the header.
		return a.restartDownload(w, stage, "server answered the resume with the whole blob")
	}
	if et := resp.Header.Get("ETag"); et != "" {
		w.ETag = et
	}
	idle := newIdleReader(body, a.cfg.IdleTimeout, cancel)
	defer idle.stop()
	src := &exactReader{r: idle, left: asg.EncryptedSize - offset}

	if !haveHeader {
		hb := make([]byte, envelope.HeaderSize)
		if _, err := io.ReadFull(src, hb); err != nil {
			return fmt.Errorf("read blob header: %w", err)
		}
		if h, err = envelope.ParseHeader(hb); err != nil {
			return refuse(RefuseBlob, "blob header refused: %v", err)
		}
		if want := envelope.EncryptedSize(asg.PlainSize, h.ChunkLog2); want != asg.EncryptedSize {
			return refuse(RefuseBlob, "blob header says %d-byte chunks, which makes %d bytes, not the assigned %d", h.ChunkSize(), want, asg.EncryptedSize)
		}
		w.Header = hb
	}
	dec, err := envelope.NewDecryptorAt(h, key, w.Chunks, src)
	if err != nil {
		if errors.Is(err, envelope.ErrWrongKey) {
			return refuse(RefuseBlob, "blob refused: its key commitment does not match the unwrapped key (tampered header or wrong blob)")
		}
		return refuse(RefuseBlob, "blob refused: %v", err)
	}

	chunk := make([]byte, h.ChunkSize())
	lastSave, lastReport := time.Now(), time.Time{}
	sinceSave := int64(0)
	for {
		n, rerr := io.ReadFull(dec, chunk)
		if n > 0 {
			if _, err := stage.Write(chunk[:n]); err != nil {
				return fmt.Errorf("stage image: %w", err)
			}
			pc.Write(chunk[:n])
			w.Chunks++
			w.Bytes += int64(n)
			sinceSave += int64(n)
		}
		done := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !done {
			if serr := a.checkpoint(w, stage); serr != nil {
				return serr
			}
			return classifyChunkError(w.Chunks, rerr)
		}
		if done && n == 0 && w.Chunks == 0 {
			// An empty image is one empty chunk; the decryptor returns EOF
			// without data, which still counts as the verified chunk.
			w.Chunks = 1
		}
		if sinceSave >= a.cfg.CheckpointBytes || time.Since(lastSave) > 5*time.Second || done {
			if err := a.checkpoint(w, stage); err != nil {
				return err
			}
			sinceSave, lastSave = 0, time.Now()
		}
		if done {
			return nil
		}
		if time.Since(lastReport) >= a.cfg.ProgressInterval {
			lastReport = time.Now()
			p := progressOf(w.Bytes, asg.PlainSize)
			if err := a.enqueue(w.Rollout, protov1.StateDownloading, &p, ""); err != nil {
				return err
			}
			a.emit(Event{Kind: EventState, State: string(protov1.StateDownloading), Rollout: w.Rollout, Target: asg.Version, Progress: p})
			if err := a.flushReports(ctx); err != nil {
				if err == errCanceled {
					return err
				}
				a.cfg.Log.V(1).Info("progress report not delivered", "err", err.Error())
			}
		}
	}
}

// checkpoint makes the staged bytes durable, then records them.
func (a *Agent) checkpoint(w *Work, stage Stage) error {
	if err := stage.Sync(); err != nil {
		return fmt.Errorf("sync staged image: %w", err)
	}
	return a.save()
}

func (a *Agent) restartDownload(w *Work, stage Stage, why string) error {
	a.cfg.Log.Info("download restarts from the beginning", "reason", why)
	w.Chunks, w.Bytes, w.Header, w.ETag = 0, 0, nil, ""
	if err := a.cfg.Staging.Discard(); err != nil {
		return err
	}
	if err := a.save(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", errShortBody, why)
}

func classifyChunkError(chunks int64, err error) error {
	switch {
	case errors.Is(err, errShortBody), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, envelope.ErrAuth), errors.Is(err, envelope.ErrTruncated), errors.Is(err, envelope.ErrTrailingData):
		return refuse(RefuseChunkAuth, "chunk %d failed authentication: the download was tampered with or corrupted (%v)", chunks, err)
	case errors.Is(err, envelope.ErrFormat), errors.Is(err, envelope.ErrUnsupported):
		return refuse(RefuseBlob, "blob refused at chunk %d: %v", chunks, err)
	}
	return err // network error while reading: transient
}

func progressOf(done, total int64) int {
	if total <= 0 {
		return 100
	}
	return int(min(100, done*100/total))
}

// getBlob sends GET blobURL with Range and If-Range. The bearer token is
// only sent to the OTA server's own origin.
func (a *Agent) getBlob(ctx context.Context, w *Work, offset int64) (io.Reader, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.Assignment.BlobURL, nil)
	if err != nil {
		return nil, nil, refuse(RefuseMalformed, "blobURL: %v", err)
	}
	if sameOrigin(req.URL, a.base) {
		req.Header.Set("Authorization", "Bearer "+a.state.Token)
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		etag := w.ETag
		if etag == "" {
			etag = `"` + w.Assignment.EncryptedSHA256 + `"`
		}
		req.Header.Set("If-Range", etag)
	}
	resp, err := a.blobClient().Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errShortBody, err)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return nil, nil, fmt.Errorf("blob: asked for bytes from %d, got Content-Range %q", offset, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		e := apiErrorOf(resp, b)
		if e.Status == http.StatusUnauthorized {
			a.state.Token = "" // enroll again at the next step
		}
		return nil, nil, fmt.Errorf("blob: %w", e)
	}
	return resp.Body, resp, nil
}

// blobClient is the configured client, except that a redirect (the OTA
// server sending the device to a presigned object-store URL) never carries
// the bearer token: net/http would forward it to another port or a
// subdomain of the server, and a presigned URL must not see it.
func (a *Agent) blobClient() *http.Client {
	c := *a.cfg.HTTPClient
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		req.Header.Del("Authorization")
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

func sameOrigin(u *url.URL, base string) bool {
	b, err := url.Parse(base)
	return err == nil && strings.EqualFold(u.Scheme, b.Scheme) && strings.EqualFold(u.Host, b.Host)
}

func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// exactReader ends the stream after left bytes (the signed size) and turns
// an early end into errShortBody, so a dropped connection is never taken
// for a truncated (tampered) blob.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		if e.left > 0 {
			return n, fmt.Errorf("%w: %d bytes missing", errShortBody, e.left)
		}
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("%w: %v", errShortBody, err)
	}
	return n, nil
}

// idleReader cancels the download when no byte arrives for timeout.
type idleReader struct {
	r     io.Reader
	t     *time.Timer
	limit time.Duration
}

func newIdleReader(r io.Reader, limit time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, limit: limit, t: time.AfterFunc(limit, cancel)}
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(i.limit)
	}
	return n, err
}

func (i *idleReader) stop() { i.t.Stop() }
