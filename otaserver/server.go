// Package otaserver is the device API of the OTA server (protocol v1,
// docs/protocol.md): enrollment, update checks answered with signed
// per-device assignments, encrypted blob downloads and status reports.
//
// Handlers read rollouts from the catalog's in-memory snapshot and devices
// from the device store; they never call the Kubernetes API, so devices
// are served while the API server is away.
package otaserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Catalog provides the current rollouts and releases.
type Catalog interface {
	Snapshot() *catalog.Snapshot
}

// Cutoffs provides each rollout's wave cutoffs (computed by the reporter
// from the fleet); ok is false until they are known.
type Cutoffs interface {
	Cutoffs(rolloutUID string) (cutoffs []uint64, ok bool)
}

// BootstrapTokens checks the cluster-wide enrollment (bootstrap) tokens,
// whose devices belong to no namespace.
type BootstrapTokens interface {
	Valid(token string) bool
}

// Config wires a Server.
type Config struct {
	Store   devicestore.Store
	Catalog Catalog
	Cutoffs Cutoffs
	Blobs   blobstore.Store
	// Signer signs assignments: an *assignment.Signer (one fixed key) or
	// *SigningKeys (a rotating key set, WatchSigningKeySecret).
	Signer AssignmentSigner
	Tokens BootstrapTokens
	// Credentials are the namespaced bootstrap credentials
	// (DeviceEnrollments); nil is none.
	Credentials *CredentialSet
	Metrics     *Metrics
	Log         logr.Logger

	// PublicURL is the base of blob URLs in assignments (such as
	// https://ota.example.com); empty derives it from each request.
	PublicURL string
	// AssignmentTTL is how long a signed assignment is valid.
	AssignmentTTL time.Duration
	// DeviceRate and DeviceBurst limit each device's update checks,
	// reports and enrollments (blob downloads are exempt).
	DeviceRate  rate.Limit
	DeviceBurst int
	// EnrollFailureRate and EnrollFailureBurst limit failed enrollments
	// (unknown bootstrap tokens) per client address: past the burst, the
	// address is answered 429 before its request is read, and earns one
	// more attempt per 1/rate. Defaults: 10 attempts, then 1 a minute.
	EnrollFailureRate  rate.Limit
	EnrollFailureBurst int
	// BlobWriteTimeout replaces the server's write timeout for blob
	// downloads, which may be large and slow.
	BlobWriteTimeout time.Duration
	// BlobRedirectTTL, when set, answers authorized blob GETs with a 307
	// to a presigned URL of the object store valid this long, instead of
	// proxying the bytes (Blobs must implement blobstore.Presigner).
	BlobRedirectTTL time.Duration
	// SeenFlushInterval batches last-seen writes.
	SeenFlushInterval time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server handles the device API.
type Server struct {
	cfg    Config
	store  devicestore.Store
	limits *deviceLimiter
	offers *offerLimiter
	// enrollFails counts failed enrollments per client address.
	enrollFails *deviceLimiter
	seen        *seenBatch
	grants      *grantCache
	presign     blobstore.Presigner // nil: blobs are proxied
	marks       *conflictMarks
	vers        *versionCache
	handler     http.Handler
}

// Limits on requests, shared with cmd/otaserver's http.Server.
const (
	MaxBodyBytes   = 16 << 10
	MaxHeaderBytes = 16 << 10
)

// New validates cfg and builds the server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil, cfg.Catalog == nil, cfg.Cutoffs == nil, cfg.Blobs == nil, cfg.Signer == nil, cfg.Tokens == nil, cfg.Metrics == nil:
		return nil, errors.New("otaserver: Store, Catalog, Cutoffs, Blobs, Signer, Tokens and Metrics are required")
	}
	if cfg.AssignmentTTL <= 0 {
		cfg.AssignmentTTL = time.Hour
	}
	if cfg.DeviceRate <= 0 {
		cfg.DeviceRate, cfg.DeviceBurst = 1, 10
	}
	if cfg.DeviceBurst <= 0 {
		cfg.DeviceBurst = 1
	}
	if cfg.BlobWriteTimeout <= 0 {
		cfg.BlobWriteTimeout = time.Hour
	}
	if cfg.EnrollFailureRate <= 0 {
		cfg.EnrollFailureRate = rate.Every(time.Minute)
	}
	if cfg.EnrollFailureBurst <= 0 {
		cfg.EnrollFailureBurst = 10
	}
	if cfg.SeenFlushInterval <= 0 {
		cfg.SeenFlushInterval = time.Second
	}
	var presign blobstore.Presigner
	if cfg.BlobRedirectTTL > 0 {
		p, ok := cfg.Blobs.(blobstore.Presigner)
		if !ok {
			return nil, errors.New("otaserver: BlobRedirectTTL needs a blob store that presigns URLs (object storage)")
		}
		presign = p
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Handlers read the key set behind the signer (GET /v1/keys, /v1/info).
	keys, err := signingKeysOf(cfg.Signer)
	if err != nil {
		return nil, err
	}
	cfg.Signer = keys
	s := &Server{
		cfg:         cfg,
		store:       timedStore{Store: cfg.Store, h: cfg.Metrics.StoreTime},
		limits:      newDeviceLimiter(cfg.DeviceRate, cfg.DeviceBurst, cfg.Now),
		enrollFails: newDeviceLimiter(cfg.EnrollFailureRate, cfg.EnrollFailureBurst, cfg.Now),
		offers:      newOfferLimiter(cfg.Now),
		seen:        newSeenBatch(),
		grants:      newGrantCache(1 << 20),
		presign:     presign,
		marks:       newConflictMarks(100_000),
		vers:        newVersionCache(4096),
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the device API handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Run flushes batched last-seen times and forgets idle rate limiters until
// ctx ends, then flushes once more.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SeenFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return s.flushSeen(flushCtx)
		case <-t.C:
			if err := s.flushSeen(ctx); err != nil {
				s.cfg.Log.Error(err, "flush last-seen times")
			}
			s.limits.sweep()
			s.enrollFails.sweep()
		}
	}
}

func (s *Server) flushSeen(ctx context.Context) error {
	batch := s.seen.take()
	if len(batch) == 0 {
		return nil
	}
	if err := s.store.Touch(ctx, batch); err != nil {
		s.seen.putBack(batch)
		return fmt.Errorf("touch %d devices: %w", len(batch), err)
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Methods are checked by allow, not by mux patterns, so a wrong method
	// gets a JSON error like every other failure.
	mux.Handle(protov1.PathInfo, s.instrument("info", allow(http.HandlerFunc(s.info), http.MethodGet)))
	mux.Handle(protov1.PathKeys, s.instrument("keys", allow(http.HandlerFunc(s.keys), http.MethodGet)))
	mux.Handle(protov1.PathEnroll, s.instrument("enroll", allow(http.HandlerFunc(s.enroll), http.MethodPost)))
	mux.Handle(protov1.PathUpdate, s.instrument("update", allow(s.authenticated(true, s.update), http.MethodGet)))
	mux.Handle(protov1.PathBlobs+"{digest}", s.instrument("blob", allow(s.authenticated(false, s.blob), http.MethodGet, http.MethodHead)))
	mux.Handle(protov1.PathStatus, s.instrument("status", allow(s.authenticated(true, s.status), http.MethodPost)))
	mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, protov1.CodeNotFound, "no such endpoint")
	})))
	return mux
}
