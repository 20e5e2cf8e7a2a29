package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// ImageLayerMediaType marks the firmware layer of an OCI artifact that has
// several layers (`oras push reg/repo:tag fw.bin:application/vnd.otaflow.firmware.v1`).
// An artifact with a single layer needs no mark.
const ImageLayerMediaType = "application/vnd.otaflow.firmware.v1"

// MaxManifestBytes bounds a manifest read from a registry.
const MaxManifestBytes = 4 << 20

const mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"

// openOCI resolves the reference to a manifest, picks the image layer from
// it (SelectLayer), checks its digest against the pinned SHA-256 and its
// size against the limits, and only then downloads it.
func (f *Fetcher) openOCI(ctx context.Context, loc *Location, src Source) (*Image, error) {
	name := "oci://" + loc.Reference()
	ref := registry.Reference{Registry: loc.Registry, Repository: loc.Repository, Reference: loc.Tag + loc.Digest}

	client := &auth.Client{
		// The fetcher's transport, egress dialer included, and its
		// redirect policy; oras-go adds its own origin and realm checks.
		Client: &http.Client{Transport: f.transport, CheckRedirect: f.checkRedirect},
		Cache:  auth.NewCache(),
	}
	client.SetUserAgent(f.userAgent)
	if c := src.Credentials; c != nil {
		client.Credential = auth.StaticCredential(loc.Registry, auth.Credential{
			Username: c.Username, Password: c.Password, AccessToken: c.Token,
		})
	}
	repo := &remote.Repository{
		Client:           client,
		Reference:        ref,
		PlainHTTP:        src.OCI.Insecure,
		MaxMetadataBytes: MaxManifestBytes,
	}

	reqCtx, cancel := context.WithCancelCause(ctx)
	desc, manifest, err := oras.FetchBytes(reqCtx, repo, ref.Reference, oras.FetchBytesOptions{MaxBytes: MaxManifestBytes})
	if err != nil {
		cancel(nil)
		return nil, ociError(name, "fetch manifest", err)
	}
	if loc.Digest != "" && desc.Digest.String() != loc.Digest {
		cancel(nil)
		return nil, fmt.Errorf("fetch %s: %w: the registry answered with manifest %s", name, ErrArtifact, desc.Digest)
	}
	layer, err := SelectLayer(desc.MediaType, manifest)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("fetch %s (manifest %s): %w", name, desc.Digest, err)
	}
	if layer.Digest.Algorithm() == digest.SHA256 && src.SHA256 != "" && layer.Digest.Encoded() != src.SHA256 {
		cancel(nil)
		return nil, fmt.Errorf("fetch %s (manifest %s): %w", name, desc.Digest, &DigestMismatchError{Want: src.SHA256, Got: layer.Digest.Encoded()})
	}
	if err := f.checkSize(name, "layer size", layer.Size, src.ExpectedSize); err != nil {
		cancel(nil)
		return nil, err
	}
	rc, err := repo.Blobs().Fetch(reqCtx, layer)
	if err != nil {
		cancel(nil)
		return nil, ociError(name, "fetch layer "+layer.Digest.String(), err)
	}
	return &Image{
		Body:           f.capBody(ctx, reqCtx, cancel, rc, name, src),
		Size:           layer.Size,
		ManifestDigest: desc.Digest.String(),
	}, nil
}

// SelectLayer picks the firmware image from a manifest: the single layer
// of media type ImageLayerMediaType if the manifest marks one, else its
// only layer. Image indexes, manifests without layers, and several
// candidate layers are refused (ErrArtifact): which file to install must
// never be a guess. The manifest comes from the registry and is untrusted.
func SelectLayer(mediaType string, manifest []byte) (ocispec.Descriptor, error) {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		return ocispec.Descriptor{}, fmt.Errorf("%w: the reference names an image index (several manifests); name one manifest by digest", ErrArtifact)
	default:
		return ocispec.Descriptor{}, fmt.Errorf("%w: unsupported manifest media type %q", ErrArtifact, mediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: manifest is not valid JSON: %v", ErrArtifact, err)
	}
	if m.MediaType != "" && m.MediaType != mediaType {
		return ocispec.Descriptor{}, fmt.Errorf("%w: manifest says media type %q, the registry %q", ErrArtifact, m.MediaType, mediaType)
	}
	var marked, layers []ocispec.Descriptor
	for _, l := range m.Layers {
		switch l.MediaType {
		case ImageLayerMediaType:
			marked = append(marked, l)
		case ocispec.MediaTypeEmptyJSON:
			// The placeholder an artifact without files carries.
			continue
		}
		layers = append(layers, l)
	}
	candidates := layers
	if len(marked) > 0 {
		candidates = marked
	}
	switch {
	case len(candidates) == 0:
		return ocispec.Descriptor{}, fmt.Errorf("%w: the manifest has no layers", ErrArtifact)
	case len(candidates) > 1:
		return ocispec.Descriptor{}, fmt.Errorf("%w: %s; mark the image with media type %s, or push it alone",
			ErrArtifact, describeLayers(candidates, len(marked) > 0), ImageLayerMediaType)
	}
	l := candidates[0]
	if err := l.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: layer digest %q: %v", ErrArtifact, l.Digest, err)
	}
	if l.Size < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("%w: layer size %d", ErrArtifact, l.Size)
	}
	return l, nil
}

func describeLayers(ls []ocispec.Descriptor, marked bool) string {
	const show = 4
	names := make([]string, 0, show)
	for i, l := range ls {
		if i == show {
			names = append(names, "…")
			break
		}
		title := l.Annotations[ocispec.AnnotationTitle]
		if title == "" {
			title = l.Digest.String()
		}
		names = append(names, fmt.Sprintf("%q (%s)", title, l.MediaType))
	}
	what := "the manifest has %d layers"
	if marked {
		what = "%d layers are marked as the image"
	}
	return fmt.Sprintf(what+": %s", len(ls), strings.Join(names, ", "))
}

// ociError classifies a registry error: refused credentials, not found
// (retried: the tag may not be pushed yet), an oversized manifest, or a
// transport error.
func ociError(name, step string, err error) error {
	var resp *errcode.ErrorResponse
	switch {
	case errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%s %s: %w: registry answered %d %s", step, name, ErrUnauthorized, resp.StatusCode, http.StatusText(resp.StatusCode))
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%s %s: %w: the registry wants a user name and password", step, name, ErrUnauthorized)
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%s %s: not found", step, name)
	case errors.Is(err, errdef.ErrSizeExceedsLimit):
		return fmt.Errorf("%s %s: %w: manifest larger than %d bytes", step, name, ErrArtifact, MaxManifestBytes)
	}
	return fmt.Errorf("%s %s: %w", step, name, unwrapURLError(err))
}
