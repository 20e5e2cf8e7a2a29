package otaserver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// assignKind says what a signed assignment asks of the device.
type assignKind int

const (
	assignInstall assignKind = iota
	assignRollback
	assignCommit
)

// wrappedKey returns the content key wrapped for the device, from the
// cache or freshly wrapped (and cached). Its existence is also what
// authorizes the device to download the blob.
func (s *Server) wrappedKey(ctx context.Context, d devicestore.Device, rel *catalog.Release) ([]byte, error) {
	blob := rel.Artifact.EncryptedSHA256
	w, err := s.store.WrappedKey(ctx, d.ID, blob)
	if err == nil {
		return w, nil
	}
	if !errors.Is(err, devicestore.ErrNotFound) {
		return nil, err
	}
	raw, err := hex.DecodeString(blob)
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("release %s: bad blob digest", rel.Key())
	}
	w, err = keywrap.Wrap(keywrap.KEM(d.KEM), d.PublicKey, rel.ContentKey, [32]byte(raw), d.ID)
	s.cfg.Metrics.KeyWraps.Inc()
	if err != nil {
		return nil, fmt.Errorf("wrap content key of %s: %w", rel.Key(), err)
	}
	if err := s.store.PutWrappedKey(ctx, d.ID, blob, w); err != nil {
		return nil, err
	}
	return w, nil
}

// sign builds and signs the device's assignment to rel.
func (s *Server) sign(ctx context.Context, r *http.Request, d devicestore.Device, ro *catalog.Rollout, rel *catalog.Release, nonce string, kind assignKind) (*assignment.Signed, error) {
	wk, err := s.wrappedKey(ctx, d, rel)
	if err != nil {
		return nil, err
	}
	if nonce == "" {
		if nonce, err = assignment.NewNonce(); err != nil {
			return nil, err
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Second)
	a := assignment.Assignment{
		DeviceID:        d.ID,
		Rollout:         ro.Key(),
		Release:         rel.Key(),
		Version:         rel.Version,
		SecurityVersion: rel.SecurityVersion,
		PlainSHA256:     rel.Artifact.PlainSHA256,
		PlainSize:       rel.Artifact.Size,
		EncryptedSHA256: rel.Artifact.EncryptedSHA256,
		EncryptedSize:   rel.Artifact.EncryptedSize,
		Suite:           rel.Artifact.Suite,
		BlobURL:         s.blobURL(r, rel.Artifact.EncryptedSHA256),
		KEM:             d.KEM,
		WrappedKey:      wk,
		VendorSignature: rel.VendorSignature,
		Rollback:        kind == assignRollback,
		Commit:          kind == assignCommit,
		Nonce:           nonce,
		IssuedAt:        now,
		ExpiresAt:       now.Add(s.cfg.AssignmentTTL),
	}
	signed, err := s.cfg.Signer.Sign(a)
	if err != nil {
		return nil, fmt.Errorf("sign assignment to %s: %w", rel.Key(), err)
	}
	return &signed, nil
}

func (s *Server) blobURL(r *http.Request, digest string) string {
	base := s.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + protov1.PathBlobs + digest
}
