package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/signature"
)

func TestClassifyFailure(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("release ns/x: step: %w", err) }
	cases := []struct {
		name string
		err  error
		want failure
	}{
		{"digest", &errDigestMismatch{want: "a", got: "b"}, failure{otav1.ReasonDigestMismatch, true, true}},
		{"bundle digest", wrap(signature.ErrDigestMismatch), failure{otav1.ReasonBundleDigest, true, true}},
		{"malformed signature", wrap(signature.ErrMalformedSignature), failure{otav1.ReasonSignatureMalformed, true, true}},
		{"not verified", wrap(signature.ErrNotVerified), failure{otav1.ReasonSignatureNotTrusted, true, true}},
		{"invalid key", wrap(signature.ErrInvalidKey), failure{otav1.ReasonKeyInvalid, true, true}},
		// Missing or unreadable inputs are retried and keep the artifact
		// (they used to stall and withdraw it); inputs read and found wrong
		// withdraw it.
		{"inputs: missing secret", &errInputs{otav1.ReasonKeyUnavailable, errors.New("x")}, failure{otav1.ReasonKeyUnavailable, false, false}},
		{"inputs: missing bundle", &errInputs{otav1.ReasonBundleUnavailable, errors.New("x")}, failure{otav1.ReasonBundleUnavailable, false, false}},
		{"inputs: bad PEM", &errInputs{otav1.ReasonKeyInvalid, errors.New("x")}, failure{otav1.ReasonKeyInvalid, true, true}},
		{"inputs: malformed signature", &errInputs{otav1.ReasonSignatureMalformed, errors.New("x")}, failure{otav1.ReasonSignatureMalformed, true, true}},
		{"too large", wrap(&fetch.TooLargeError{Limit: 1, Size: 2}), failure{otav1.ReasonImageTooLarge, true, false}},
		{"size mismatch", wrap(&fetch.SizeMismatchError{Expected: 1, Got: 2}), failure{otav1.ReasonSizeMismatch, true, false}},
		{"unsupported scheme", wrap(fetch.ErrUnsupportedScheme), failure{otav1.ReasonUnsupportedSource, true, false}},
		{"http 404", wrap(&fetch.HTTPStatusError{URL: "u", StatusCode: 404}), failure{otav1.ReasonFetchFailed, false, false}},
		{"cut off", wrap(io.ErrUnexpectedEOF), failure{otav1.ReasonFetchFailed, false, false}},
		{"timeout", wrap(context.DeadlineExceeded), failure{otav1.ReasonFetchFailed, false, false}},
		{"storage", fmt.Errorf("%w: disk full", errStorage), failure{otav1.ReasonStorageFailed, false, false}},

		// Sources.
		{"egress refusal", wrap(fmt.Errorf("GET u: %w", &egress.ForbiddenError{Host: "127.0.0.1", Rule: egress.RuleLoopback})), failure{otav1.ReasonSourceForbidden, true, false}},
		{"egress refusal in a join", wrap(errors.Join(errors.New("dial a"), &egress.ForbiddenError{Host: "h", Rule: egress.RuleMetadata})), failure{otav1.ReasonSourceForbidden, true, false}},
		{"credentials refused", wrap(fmt.Errorf("%w: 401", fetch.ErrUnauthorized)), failure{otav1.ReasonSourceAuthFailed, false, false}},
		{"credentials of another scheme", wrap(fetch.ErrCredentials), failure{otav1.ReasonSourceCredentialsInvalid, true, false}},
		{"ambiguous OCI artifact", wrap(fetch.ErrArtifact), failure{otav1.ReasonOCIArtifactInvalid, true, false}},
		{"OCI layer is another image", wrap(&fetch.DigestMismatchError{Want: "a", Got: "b"}), failure{otav1.ReasonDigestMismatch, true, true}},
		{"credentials Secret missing", &errSourceCredentials{otav1.ReasonSourceCredentialsUnavailable, errors.New("x")}, failure{otav1.ReasonSourceCredentialsUnavailable, false, false}},
		{"credentials Secret wrong", &errSourceCredentials{otav1.ReasonSourceCredentialsInvalid, errors.New("x")}, failure{otav1.ReasonSourceCredentialsInvalid, true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyFailure(tc.err); got != tc.want {
				t.Fatalf("classifyFailure(%v) = %+v, want %+v", tc.err, got, tc.want)
			}
		})
	}
}

func TestInputsDigestChangesWithEveryInput(t *testing.T) {
	base := func() *verifyInputs {
		return &verifyInputs{
			Signature: signature.Signature{Raw: []byte("sig"), Digest: []byte("d"), KeyHint: "h"},
			Keys:      []signature.Key{{Name: "s/a", ID: "A"}, {Name: "s/b", ID: "B"}},
		}
	}
	ref := inputsDigest("plain", base())
	mutations := map[string]func(*verifyInputs) string{
		"plain digest": func(in *verifyInputs) string { return inputsDigest("other", in) },
		"signature":    func(in *verifyInputs) string { in.Signature.Raw = []byte("sig2"); return inputsDigest("plain", in) },
		"claimed digest": func(in *verifyInputs) string {
			in.Signature.Digest = nil
			return inputsDigest("plain", in)
		},
		"hint":        func(in *verifyInputs) string { in.Signature.KeyHint = ""; return inputsDigest("plain", in) },
		"key removed": func(in *verifyInputs) string { in.Keys = in.Keys[:1]; return inputsDigest("plain", in) },
		"key rotated": func(in *verifyInputs) string { in.Keys[1].ID = "B2"; return inputsDigest("plain", in) },
		// Field boundaries are length-prefixed, so moving bytes between
		// fields changes the digest.
		"bytes moved": func(in *verifyInputs) string {
			in.Signature.Raw, in.Signature.Digest = []byte("si"), []byte("gd")
			return inputsDigest("plain", in)
		},
	}
	for name, m := range mutations {
		if got := m(base()); got == ref {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	// Key order does not matter.
	in := base()
	in.Keys[0], in.Keys[1] = in.Keys[1], in.Keys[0]
	if inputsDigest("plain", in) != ref {
		t.Error("digest depends on key order")
	}
}
