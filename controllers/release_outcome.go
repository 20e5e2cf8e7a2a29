package controllers

import (
	"errors"
	"fmt"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/signature"
)

// errDigestMismatch: the fetched image is not the one spec.source.sha256 pins.
type errDigestMismatch struct{ want, got string }

func (e *errDigestMismatch) Error() string {
	return fmt.Sprintf("image sha256 is %s, spec.source.sha256 is %s", e.got, e.want)
}

// failure is how a failed release build is shown: the condition reason, and
// whether retrying can help (transient) or a human must act (permanent, the
// release is Stalled).
type failure struct {
	Reason    string
	Permanent bool
	// Withdraw: the image definitely failed verification (or is not the
	// pinned one), so Verified is set False with Reason and a stored
	// artifact is withdrawn. Otherwise Verified is Unknown (nothing was
	// verified, or the inputs to check could not be read) and an artifact
	// is kept.
	Withdraw bool
}

// classifyFailure maps an error from loading inputs, fetching, verifying or
// storing a release to its failure.
func classifyFailure(err error) failure {
	if in, ok := asInputsError(err); ok {
		if in.unavailable() {
			// Missing or unreadable (a GitOps prune, a sync order, an
			// apiserver hiccup): says nothing about the image, so retry
			// and keep what was verified.
			return failure{Reason: in.reason}
		}
		return failure{Reason: in.reason, Permanent: true, Withdraw: true}
	}
	if sc, ok := asSourceCredentialsError(err); ok {
		// Nothing was fetched; a Secret change brings the release back.
		return failure{Reason: sc.reason, Permanent: sc.reason == otav1.ReasonSourceCredentialsInvalid}
	}
	var dm *errDigestMismatch
	var layerMismatch *fetch.DigestMismatchError
	var forbidden *egress.ForbiddenError
	var tooLarge *fetch.TooLargeError
	var sizeMismatch *fetch.SizeMismatchError
	switch {
	case errors.As(err, &dm), errors.As(err, &layerMismatch):
		return failure{Reason: otav1.ReasonDigestMismatch, Permanent: true, Withdraw: true}
	case errors.As(err, &forbidden):
		return failure{Reason: otav1.ReasonSourceForbidden, Permanent: true}
	case errors.Is(err, fetch.ErrArtifact):
		return failure{Reason: otav1.ReasonOCIArtifactInvalid, Permanent: true}
	case errors.Is(err, fetch.ErrUnauthorized):
		// Retried: a grant on the server may be on its way, and a
		// changed Secret brings the release back at once.
		return failure{Reason: otav1.ReasonSourceAuthFailed}
	case errors.Is(err, fetch.ErrCredentials):
		return failure{Reason: otav1.ReasonSourceCredentialsInvalid, Permanent: true}
	case errors.Is(err, signature.ErrDigestMismatch):
		return failure{Reason: otav1.ReasonBundleDigest, Permanent: true, Withdraw: true}
	case errors.Is(err, signature.ErrMalformedSignature):
		return failure{Reason: otav1.ReasonSignatureMalformed, Permanent: true, Withdraw: true}
	case errors.Is(err, signature.ErrNotVerified):
		return failure{Reason: otav1.ReasonSignatureNotTrusted, Permanent: true, Withdraw: true}
	case errors.Is(err, signature.ErrInvalidKey), errors.Is(err, signature.ErrNoKeys):
		return failure{Reason: otav1.ReasonKeyInvalid, Permanent: true, Withdraw: true}
	case errors.As(err, &tooLarge):
		return failure{Reason: otav1.ReasonImageTooLarge, Permanent: true}
	case errors.As(err, &sizeMismatch):
		return failure{Reason: otav1.ReasonSizeMismatch, Permanent: true}
	case errors.Is(err, errMenderMismatch):
		return failure{Reason: otav1.ReasonMenderArtifactMismatch, Permanent: true, Withdraw: true}
	case errors.Is(err, errMenderInvalid):
		return failure{Reason: otav1.ReasonMenderArtifactInvalid, Permanent: true, Withdraw: true}
	case errors.Is(err, errStorage):
		return failure{Reason: otav1.ReasonStorageFailed}
	case fetch.IsPermanent(err):
		return failure{Reason: otav1.ReasonUnsupportedSource, Permanent: true}
	default:
		return failure{Reason: otav1.ReasonFetchFailed}
	}
}

// errStorage marks failures of the blob store or of writing the key Secret;
// they are retried.
var errStorage = errors.New("storage")
