// Package s3 is a blobstore.Store on an S3-compatible object store (AWS S3,
// MinIO, Ceph RGW, SeaweedFS, versitygw, ...), using minio-go.
//
// Layout: every blob is one object, <prefix>sha256/<64 hex>. Nothing else is
// ever written to the bucket, so a lifecycle rule or a shared bucket cannot
// confuse List, and other keys under the prefix are ignored.
//
// Writes. A Writer hashes what it is given and spools it to an unlinked local
// temp file; Commit, once the digest is known, uploads the file straight to
// its final key (one PUT, or a multipart upload read in parallel from the
// file for large blobs). The alternative, streaming to a temporary object and
// server-side copying it to the digest key, was rejected because:
//   - a copy is a second full write on most servers, and CopyObject stops at
//     5 GiB, so multi-GB images would need a multipart copy on top;
//   - a crashed writer leaves temp objects (or incomplete multipart uploads)
//     in the bucket that only a lifecycle rule or a sweeper removes, and
//     every replica would need to agree which temp objects are stale;
//   - the object under a digest key would be visible before anyone checked
//     that its bytes hash to that digest.
//
// The price is local disk for one blob per concurrent writer (an emptyDir
// in Kubernetes; Options.TempDir). PUT and CompleteMultipartUpload are atomic
// in S3, so readers never see partial content. Blobs up to one part (16 MiB
// by default) go up in a single PUT carrying x-amz-checksum-sha256, so the
// server itself checks that the bytes hash to the key. Concurrent writers of
// the same content each spool; an object that exists already is left alone
// (HEAD before upload, and If-None-Match: * on single-part PUTs), and in the
// remaining race, two multipart uploads of one digest, both store identical
// bytes under the same key, which is harmless.
//
// Reads. Open sends one HEAD. The returned Blob issues ranged GETs: ReadAt
// fetches exactly the requested range, and sequential Read streams a window
// that starts small and doubles, so http.ServeContent answering a small Range
// request downloads little more than the range while a full download costs
// a handful of requests.
//
// Timeouts. Metadata requests (HEAD, DELETE, each listing page) are bounded
// by Options.RequestTimeout; transfers, whose length depends on the size and
// on how fast the consumer reads, are instead cancelled when they make no
// progress for Options.StallTimeout. All requests also honour the caller's
// context.
package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/otaflow/otaflow/internal/blobstore"
)

const (
	blobsDir = "sha256/"

	defaultRegion         = "us-east-1"
	defaultRequestTimeout = 30 * time.Second
	defaultStallTimeout   = time.Minute
	defaultMaxRetries     = 3
	defaultUploadThreads  = 4
	defaultListPageSize   = 1000

	// A sequential reader's first GET covers minReadWindow bytes; each
	// following GET doubles the window up to maxReadWindow.
	minReadWindow = 1 << 20
	maxReadWindow = 64 << 20

	// minPartSize is the smallest part S3 accepts (except the last).
	minPartSize = 5 << 20

	// minPresignTTL and maxPresignTTL are the bounds SigV4 puts on
	// X-Amz-Expires.
	minPresignTTL = time.Second
	maxPresignTTL = 7 * 24 * time.Hour
)

// Options configures a Store.
type Options struct {
	// Endpoint is host[:port] of the S3 API, without scheme; for AWS,
	// "s3.<region>.amazonaws.com".
	Endpoint string
	// Insecure selects plain HTTP instead of HTTPS.
	Insecure bool
	// Region is the bucket's region. It is needed to sign requests and
	// presigned URLs without a GetBucketLocation call; default us-east-1.
	Region string
	// Bucket must exist; New checks that it does.
	Bucket string
	// Prefix is prepended to every key; a trailing "/" is added if missing.
	Prefix string
	// Credentials sign requests; required. credentials.NewStaticV4 for fixed
	// keys, or any provider (environment, files, IAM) that refreshes them.
	Credentials *credentials.Credentials
	// Transport overrides the HTTP transport, for a custom CA for example.
	// It should bound dial, TLS handshake and response header times as
	// minio.DefaultTransport does.
	Transport http.RoundTripper

	// TempDir holds the spool files of uncommitted writes; default
	// os.TempDir(). It needs room for the largest blob times the number of
	// concurrent writers.
	TempDir string
	// RequestTimeout bounds each metadata request; default 30s.
	RequestTimeout time.Duration
	// StallTimeout cancels a transfer that moved no data for this long;
	// default 1m.
	StallTimeout time.Duration
	// MaxRetries bounds minio-go's retries of a failed request; default 3.
	MaxRetries int
	// PartSize of multipart uploads; 0 lets minio-go choose (16 MiB, more
	// for blobs over 160 GB). Blobs smaller than a part use a single PUT.
	PartSize uint64
	// UploadThreads is the number of parts uploaded in parallel; default 4.
	UploadThreads uint
	// ListPageSize is the number of keys requested per listing page;
	// default 1000, the S3 maximum.
	ListPageSize int
}

// Store is a blobstore.Store on an S3 bucket. It is safe for concurrent use,
// also by several processes sharing the bucket.
type Store struct {
	client *minio.Client
	bucket string
	prefix string // ends with "/" or is empty

	region         string
	tempDir        string
	requestTimeout time.Duration
	stallTimeout   time.Duration
	partSize       uint64
	uploadThreads  uint
	listPageSize   int
}

var (
	_ blobstore.Store     = (*Store)(nil)
	_ blobstore.Presigner = (*Store)(nil)
)

// New returns a Store for the bucket in opts. It sends one request to check
// that the bucket exists and the credentials may access it, so that a
// misconfiguration fails at startup rather than on the first upload.
func New(ctx context.Context, opts Options) (*Store, error) {
	s, err := newStore(opts)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	ok, err := s.client.BucketExists(rctx, s.bucket)
	if err != nil {
		return nil, fmt.Errorf("new s3 blob store: check bucket %q: %w", s.bucket, ctxErr(rctx, err))
	}
	if !ok {
		return nil, fmt.Errorf("new s3 blob store: bucket %q does not exist at %s", s.bucket, opts.Endpoint)
	}
	return s, nil
}

// Validate checks the options without sending a request. New also requires
// Credentials, which Validate does not look at.
func (o Options) Validate() error {
	if o.Endpoint == "" {
		return errors.New("endpoint is required")
	}
	if strings.Contains(o.Endpoint, "://") {
		return fmt.Errorf("endpoint %q must be host[:port], without scheme", o.Endpoint)
	}
	if u, err := url.Parse("//" + o.Endpoint); err != nil || u.Host != o.Endpoint || u.User != nil {
		return fmt.Errorf("endpoint %q must be host[:port], without path or user", o.Endpoint)
	}
	if o.Bucket == "" {
		return errors.New("bucket is required")
	}
	if err := s3utils.CheckValidBucketNameStrict(o.Bucket); err != nil {
		return fmt.Errorf("bucket %q: %w", o.Bucket, err)
	}
	if _, err := normalizePrefix(o.Prefix); err != nil {
		return err
	}
	if o.PartSize != 0 && o.PartSize < minPartSize {
		return fmt.Errorf("part size %d is below the S3 minimum of 5 MiB", o.PartSize)
	}
	if o.RequestTimeout < 0 || o.StallTimeout < 0 || o.MaxRetries < 0 || o.ListPageSize < 0 {
		return errors.New("timeouts, retries and page size must not be negative")
	}
	return nil
}

func newStore(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("new s3 blob store: %w", err)
	}
	if opts.Credentials == nil {
		return nil, errors.New("new s3 blob store: credentials are required")
	}
	prefix, _ := normalizePrefix(opts.Prefix)
	s := &Store{
		bucket:         opts.Bucket,
		prefix:         prefix,
		region:         cmp.Or(opts.Region, defaultRegion),
		tempDir:        cmp.Or(opts.TempDir, os.TempDir()),
		requestTimeout: cmp.Or(opts.RequestTimeout, defaultRequestTimeout),
		stallTimeout:   cmp.Or(opts.StallTimeout, defaultStallTimeout),
		partSize:       opts.PartSize,
		uploadThreads:  cmp.Or(opts.UploadThreads, defaultUploadThreads),
		listPageSize:   cmp.Or(opts.ListPageSize, defaultListPageSize),
	}
	transport := opts.Transport
	if transport == nil {
		tr, err := minio.DefaultTransport(!opts.Insecure)
		if err != nil {
			return nil, fmt.Errorf("new s3 blob store: %w", err)
		}
		tr.ResponseHeaderTimeout = s.requestTimeout
		transport = tr
	}
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:      opts.Credentials,
		Secure:     !opts.Insecure,
		Transport:  transport,
		Region:     s.region,
		MaxRetries: cmp.Or(opts.MaxRetries, defaultMaxRetries),
	})
	if err != nil {
		return nil, fmt.Errorf("new s3 blob store: %w", err)
	}
	s.client = client
	return s, nil
}

// normalizePrefix refuses prefixes that S3 servers treat inconsistently or
// that would make keys ambiguous.
func normalizePrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("invalid key prefix %q: empty, . or .. segment", p)
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("invalid key prefix %q: control character or backslash", p)
		}
	}
	return p + "/", nil
}

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// key must only be called with a digest that passed ValidDigest.
func (s *Store) key(digest string) string {
	return s.prefix + blobsDir + digest
}

// Create implements blobstore.Store. It sends no request; the spool file is
// created in Options.TempDir.
func (s *Store) Create(ctx context.Context) (blobstore.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return newWriter(s)
}

// Open implements blobstore.Store. Reads of the returned Blob are bound to
// ctx: they fail once it is done, so a Blob opened for an HTTP request must
// not outlive the request's context.
func (s *Store) Open(ctx context.Context, digest string) (blobstore.Blob, error) {
	if !blobstore.ValidDigest(digest) {
		return nil, fmt.Errorf("open blob %q: %w", digest, blobstore.ErrInvalidDigest)
	}
	info, err := s.stat(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return newBlob(ctx, s, info), nil
}

// Stat implements blobstore.Store.
func (s *Store) Stat(ctx context.Context, digest string) (blobstore.Info, error) {
	if !blobstore.ValidDigest(digest) {
		return blobstore.Info{}, fmt.Errorf("stat blob %q: %w", digest, blobstore.ErrInvalidDigest)
	}
	info, err := s.stat(ctx, digest)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("stat blob %s: %w", digest, err)
	}
	return info, nil
}

func (s *Store) stat(ctx context.Context, digest string) (blobstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return blobstore.Info{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	oi, err := s.client.StatObject(rctx, s.bucket, s.key(digest), minio.StatObjectOptions{})
	if err != nil {
		return blobstore.Info{}, mapErr(rctx, err)
	}
	return blobstore.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements blobstore.Store. S3 answers a DELETE of a missing key
// with success, which is what the contract wants.
func (s *Store) Delete(ctx context.Context, digest string) error {
	if !blobstore.ValidDigest(digest) {
		return fmt.Errorf("delete blob %q: %w", digest, blobstore.ErrInvalidDigest)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	if err := s.client.RemoveObject(rctx, s.bucket, s.key(digest), minio.RemoveObjectOptions{}); err != nil {
		if err := mapErr(rctx, err); !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("delete blob %s: %w", digest, err)
		}
	}
	return nil
}

// List implements blobstore.Store. It pages through the listing with
// ListObjectsV2; each page must arrive within RequestTimeout. Keys under
// the prefix that are not blobs are ignored.
func (s *Store) List(ctx context.Context) ([]blobstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog is re-armed for every key, so it fires only when a page
	// takes longer than RequestTimeout to arrive.
	watchdog := time.AfterFunc(s.requestTimeout, func() {
		cancel(fmt.Errorf("list page: %w", context.DeadlineExceeded))
	})
	defer watchdog.Stop()

	dir := s.prefix + blobsDir
	var infos []blobstore.Info
	for oi := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{
		Prefix:    dir,
		Recursive: true,
		MaxKeys:   s.listPageSize,
	}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("list blobs: %w", mapErr(lctx, oi.Err))
		}
		watchdog.Reset(s.requestTimeout)
		name := strings.TrimPrefix(oi.Key, dir)
		if !blobstore.ValidDigest(name) {
			continue
		}
		infos = append(infos, blobstore.Info{Digest: name, Size: oi.Size, ModTime: oi.LastModified})
	}
	// minio-go ends the listing silently when its context is cancelled.
	if err := context.Cause(lctx); err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	// S3 lists in key order, but not every compatible server does.
	slices.SortFunc(infos, func(a, b blobstore.Info) int { return strings.Compare(a.Digest, b.Digest) })
	return infos, nil
}

// PresignGet implements blobstore.Presigner: it returns a URL that lets
// anyone GET (with Range) the blob for ttl, which must be between one
// second and seven days. Signing is local; the blob's existence is not
// checked. The URL carries the store's endpoint, so devices must be able to
// reach it.
func (s *Store) PresignGet(ctx context.Context, digest string, ttl time.Duration) (*url.URL, error) {
	if !blobstore.ValidDigest(digest) {
		return nil, fmt.Errorf("presign blob %q: %w", digest, blobstore.ErrInvalidDigest)
	}
	if ttl < minPresignTTL || ttl > maxPresignTTL {
		return nil, fmt.Errorf("presign blob %s: ttl %v outside [%v, %v]", digest, ttl, minPresignTTL, maxPresignTTL)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("presign blob %s: %w", digest, err)
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, s.key(digest), ttl, nil)
	if err != nil {
		return nil, fmt.Errorf("presign blob %s: %w", digest, err)
	}
	return u, nil
}

// mapErr turns S3 "no such key" answers into blobstore.ErrNotFound and
// makes sure a failure caused by ctx reports the context error.
func mapErr(ctx context.Context, err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == minio.NoSuchKey || (resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket) {
		return blobstore.ErrNotFound
	}
	return ctxErr(ctx, err)
}

// ctxErr wraps err with ctx's cause when ctx is done, so callers can test for
// context.Canceled and context.DeadlineExceeded whatever minio-go returned.
func ctxErr(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w: %w", cause, err)
}
