package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/signature"
)

// maxBundleSize bounds a cosign bundle read from a ConfigMap.
const maxBundleSize = 1 << 20

// verifyInputs is what a signature check needs: the signature and the keys
// trusted to have made it, plus a digest of both so a change to either is
// noticed.
type verifyInputs struct {
	Signature signature.Signature
	Keys      []signature.Key
	Digest    string
}

// errInputs marks a problem with the verification inputs (missing or
// unreadable Secret or ConfigMap, bad PEM, malformed signature); the reason
// says which.
type errInputs struct {
	reason string
	err    error
}

func (e *errInputs) Error() string { return e.err.Error() }
func (e *errInputs) Unwrap() error { return e.err }

// unavailable reports an input that could not be read (missing, or a read
// error), as opposed to one that was read and is wrong.
func (e *errInputs) unavailable() bool {
	return e.reason == otav1.ReasonKeyUnavailable || e.reason == otav1.ReasonBundleUnavailable
}

// loadVerifyInputs reads trusted keys and the signature. Secrets and
// ConfigMaps are read with the uncached reader: the manager only watches
// their metadata, so it never caches Secret contents cluster-wide.
func loadVerifyInputs(ctx context.Context, reader client.Reader, rel *otav1.FirmwareRelease) (*verifyInputs, error) {
	in := &verifyInputs{}
	sigSpec := rel.Spec.Signature
	var err error
	switch {
	case sigSpec.BundleRef != nil:
		var cm corev1.ConfigMap
		ref := sigSpec.BundleRef
		if err := reader.Get(ctx, types.NamespacedName{Namespace: rel.Namespace, Name: ref.Name}, &cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &errInputs{otav1.ReasonBundleUnavailable, fmt.Errorf("bundle ConfigMap %s not found", ref.Name)}
			}
			return nil, &errInputs{otav1.ReasonBundleUnavailable, fmt.Errorf("read bundle ConfigMap %s: %w", ref.Name, err)}
		}
		data, ok := cm.Data[ref.Key]
		raw := []byte(data)
		if !ok {
			b, okBin := cm.BinaryData[ref.Key]
			if !okBin {
				return nil, &errInputs{otav1.ReasonBundleUnavailable, fmt.Errorf("bundle ConfigMap %s has no key %q", ref.Name, ref.Key)}
			}
			raw = b
		}
		if len(raw) > maxBundleSize {
			return nil, &errInputs{otav1.ReasonSignatureMalformed, fmt.Errorf("bundle %s/%s is larger than %d bytes", ref.Name, ref.Key, maxBundleSize)}
		}
		in.Signature, err = signature.ParseBundle(raw)
		if err != nil {
			return nil, &errInputs{otav1.ReasonSignatureMalformed, fmt.Errorf("parse bundle %s/%s: %w", ref.Name, ref.Key, err)}
		}
	default:
		in.Signature, err = signature.ParseValue(sigSpec.Value)
		if err != nil {
			return nil, &errInputs{otav1.ReasonSignatureMalformed, fmt.Errorf("parse signature value: %w", err)}
		}
	}

	for _, pk := range sigSpec.PublicKeys {
		ref := pk.SecretRef
		name := ref.Name + "/" + ref.Key
		var s corev1.Secret
		if err := reader.Get(ctx, types.NamespacedName{Namespace: rel.Namespace, Name: ref.Name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &errInputs{otav1.ReasonKeyUnavailable, fmt.Errorf("public key Secret %s not found", ref.Name)}
			}
			return nil, &errInputs{otav1.ReasonKeyUnavailable, fmt.Errorf("read public key Secret %s: %w", ref.Name, err)}
		}
		pemBytes, ok := s.Data[ref.Key]
		if !ok {
			return nil, &errInputs{otav1.ReasonKeyUnavailable, fmt.Errorf("public key Secret %s has no key %q", ref.Name, ref.Key)}
		}
		k, err := signature.ParsePublicKey(name, pemBytes)
		if err != nil {
			return nil, &errInputs{otav1.ReasonKeyInvalid, fmt.Errorf("public key %s: %w", name, err)}
		}
		in.Keys = append(in.Keys, k)
	}
	in.Digest = inputsDigest(rel.Spec.Source.SHA256, in)
	return in, nil
}

// inputsDigest fingerprints everything a verification depended on.
func inputsDigest(plainSHA256 string, in *verifyInputs) string {
	h := sha256.New()
	write := func(b []byte) {
		var n [8]byte
		l := uint64(len(b))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	write([]byte(plainSHA256))
	write(in.Signature.Raw)
	write(in.Signature.Digest)
	write([]byte(in.Signature.KeyHint))
	ids := make([]string, 0, len(in.Keys))
	for _, k := range in.Keys {
		ids = append(ids, k.Name+"="+k.ID)
	}
	sort.Strings(ids)
	for _, id := range ids {
		write([]byte(id))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// asInputsError reports whether err is a verification-input problem.
func asInputsError(err error) (*errInputs, bool) {
	var e *errInputs
	ok := errors.As(err, &e)
	return e, ok
}
