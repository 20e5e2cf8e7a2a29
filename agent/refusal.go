package agent

import (
	"errors"
	"fmt"
	"strings"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// Refusal codes: why the device refused an assignment, a commit or an
// image. They are stable, short, and used as keys in Event and simulator
// summaries.
const (
	RefuseMalformed       = "malformed"         // the answer or payload does not parse
	RefuseBadSignature    = "bad-signature"     // assignment not signed by the trusted key
	RefuseWrongDevice     = "wrong-device"      // assignment for another device
	RefuseExpired         = "expired"           // past expiresAt (beyond clock skew)
	RefuseNotYetValid     = "not-yet-valid"     // issuedAt in the future (beyond clock skew)
	RefuseNonce           = "nonce-mismatch"    // nonce is not the one this check sent
	RefuseBelowFloor      = "below-floor"       // securityVersion below the security floor
	RefuseSuite           = "unsupported-suite" // not otaflow-enc/v1
	RefuseKEM             = "kem-mismatch"      // wrapped for another key type
	RefuseRolloutMismatch = "rollout-mismatch"  // signed rollout differs from the answer's
	RefuseUnwrap          = "unwrap-failed"     // content key does not open with the device key
	RefuseBlob            = "blob-invalid"      // header, size or ETag of the blob is wrong
	RefuseChunkAuth       = "chunk-auth"        // a chunk failed authentication (tampered)
	RefusePlainDigest     = "plain-digest"      // plaintext SHA-256 or size differs from the assignment
	RefuseVendorSignature = "vendor-signature"  // vendor signature missing or not verified
	RefuseInstall         = "install-failed"    // the installer failed
	// RefuseCommit: a commit answer whose assignment is not signed as a
	// commit, or not for the running version. Never reported to the
	// rollout (a commit is not an update that can fail).
	RefuseCommit = "commit-mismatch"
	// RefuseUntrustedKey: the assignment names a key the device does not
	// trust, even after following the server's key set (it missed a whole
	// key rotation). The reason starts with the code and names the key.
	RefuseUntrustedKey = protov1.ReasonUntrustedSigningKey
)

// Refusal is a verification failure. Its Error is the reason sent to the
// server with the "failed" report (at most 512 printable characters).
type Refusal struct {
	Code string
	Err  error
}

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Err: fmt.Errorf(format, args...)}
}

// AsRefusal returns the Refusal in err's chain, if any.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// reportReason trims s to what the server accepts: printable ASCII, at
// most 512 characters.
func reportReason(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			r = ' '
		}
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) > 512 {
		out = out[:509] + "..."
	}
	if out == "" {
		out = "failed"
	}
	return out
}
