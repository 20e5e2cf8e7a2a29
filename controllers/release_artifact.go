package controllers

import (
	"context"
	"crypto/md5"  // what DDI clients check; SHA-256 pins the image
	"crypto/sha1" // likewise
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/menderartifact"
	"github.com/otaflow/otaflow/internal/signature"
)

// Content-key Secrets: one per encrypted blob, owned by the release. The
// Secret is the record that the blob exists, so cleanup finds every blob.
// The names are defined in the API package, which the OTA server reads them
// from without linking the controllers.
const (
	LabelReleaseUID                        = otav1.LabelReleaseUID
	AnnotationBlob                         = otav1.AnnotationBlob
	ContentKeySecretType corev1.SecretType = otav1.ContentKeySecretType
	ContentKeyField                        = otav1.ContentKeyField
)

// built is the result of a successful build: the artifact and who verified it.
type built struct {
	artifact     otav1.Artifact
	verification otav1.Verification
}

// buildArtifact fetches the image once and, in that single pass, hashes it
// (SHA-256 in the signature check; SHA-1 and MD5 for DDI clients), feeds the
// signature check and encrypts it into a temporary blob. Only an
// image whose digest matches and whose signature verifies is committed: the
// key Secret is written first (it records the blob for cleanup), then the
// blob is committed.
func (r *FirmwareReleaseReconciler) buildArtifact(ctx context.Context, rel *otav1.FirmwareRelease, in *verifyInputs, src fetch.Source) (*built, error) {
	ctx, cancel := context.WithTimeout(ctx, r.FetchTimeout)
	defer cancel()

	img, err := r.Fetcher.Fetch(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("fetch image: %w", err)
	}
	body := img.Body
	defer body.Close()

	check, err := signature.NewCheck(in.Signature, in.Keys)
	if err != nil {
		return nil, fmt.Errorf("prepare signature check: %w", err)
	}
	key, err := envelope.NewKey()
	if err != nil {
		return nil, fmt.Errorf("%w: new content key: %w", errStorage, err)
	}
	w, err := r.Blobs.Create(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: create blob: %w", errStorage, err)
	}
	defer func() { _ = w.Abort() }() // no-op after Commit

	sums := newPlainSums()
	sinks := []io.Writer{check, sums}
	var mender *menderartifact.Sniffer
	if rel.Spec.Format == otav1.FormatMender {
		mender = menderartifact.NewSniffer(menderartifact.DefaultSniffLimit)
		sinks = append(sinks, mender)
	}
	plainSize, err := envelope.Encrypt(writeTagger{w}, io.TeeReader(body, io.MultiWriter(sinks...)), key)
	if err != nil {
		if errors.Is(err, errWrite) {
			return nil, fmt.Errorf("%w: write blob: %w", errStorage, err)
		}
		return nil, fmt.Errorf("fetch image: %w", err)
	}

	plainDigest := hex.EncodeToString(check.SHA256())
	if plainDigest != rel.Spec.Source.SHA256 {
		return nil, &errDigestMismatch{want: rel.Spec.Source.SHA256, got: plainDigest}
	}
	verifiedBy, err := check.Verify()
	if err != nil {
		return nil, fmt.Errorf("verify signature of %s: %w", rel.Spec.Source.SHA256, err)
	}

	var menderHeader *otav1.MenderArtifact
	if mender != nil {
		if menderHeader, err = checkMenderHeader(rel, mender); err != nil {
			return nil, err
		}
	}

	encDigest := w.Digest()
	secretName, err := r.writeKeySecret(ctx, rel, encDigest, key)
	if err != nil {
		return nil, err
	}
	info, err := w.CommitExpect(ctx, encDigest)
	if err != nil {
		return nil, fmt.Errorf("%w: commit blob %s: %w", errStorage, encDigest, err)
	}
	return &built{
		artifact: otav1.Artifact{
			PlainSHA256:     plainDigest,
			Size:            plainSize,
			PlainSHA1:       sums.sha1Hex(),
			PlainMD5:        sums.md5Hex(),
			Filename:        artifactFilename(rel),
			EncryptedSHA256: info.Digest,
			EncryptedSize:   info.Size,
			Suite:           envelope.Suite,
			KeySecretName:   secretName,
			ManifestDigest:  img.ManifestDigest,
			Mender:          menderHeader,
		},
		verification: otav1.Verification{
			Key:          verifiedBy.Name,
			KeyID:        verifiedBy.ID,
			Signature:    base64.StdEncoding.EncodeToString(in.Signature.Raw),
			InputsDigest: in.Digest,
			Time:         metav1.NewTime(r.Clock.Now()),
		},
	}, nil
}

// errWrite tags blob write errors so they are told apart from read errors
// of the image stream inside envelope.Encrypt.
var errWrite = errors.New("blob write")

type writeTagger struct{ w io.Writer }

func (t writeTagger) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errWrite, err)
	}
	return n, err
}

// writeKeySecret stores the content key in an immutable Secret owned by the
// release.
func (r *FirmwareReleaseReconciler) writeKeySecret(ctx context.Context, rel *otav1.FirmwareRelease, encDigest string, key []byte) (string, error) {
	prefix := rel.Name
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   rel.Namespace,
			Name:        fmt.Sprintf("%s-key-%s", prefix, encDigest[:16]),
			Labels:      map[string]string{LabelReleaseUID: string(rel.UID)},
			Annotations: map[string]string{AnnotationBlob: encDigest},
		},
		Type:      ContentKeySecretType,
		Immutable: ptr.To(true),
		Data:      map[string][]byte{ContentKeyField: key},
	}
	if err := controllerutil.SetControllerReference(rel, s, r.Scheme()); err != nil {
		return "", fmt.Errorf("own key Secret: %w", err)
	}
	if err := r.Create(ctx, s); err != nil {
		return "", fmt.Errorf("%w: create key Secret %s: %w", errStorage, s.Name, err)
	}
	return s.Name, nil
}

// readContentKey returns the content key of the current artifact.
func (r *FirmwareReleaseReconciler) readContentKey(ctx context.Context, rel *otav1.FirmwareRelease) ([]byte, error) {
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, keySecretName(rel), &s); err != nil {
		return nil, err
	}
	key := s.Data[ContentKeyField]
	if len(key) != envelope.KeySize {
		return nil, fmt.Errorf("key Secret %s holds %d bytes, want %d", s.Name, len(key), envelope.KeySize)
	}
	return key, nil
}

// plainSums hashes the plaintext for DDI clients, beside the SHA-256 the
// signature check computes.
type plainSums struct{ sha1, md5 hash.Hash }

func newPlainSums() *plainSums {
	return &plainSums{sha1: sha1.New(), md5: md5.New()}
}

func (s *plainSums) Write(p []byte) (int, error) {
	s.sha1.Write(p) // hash.Hash writes never fail
	s.md5.Write(p)
	return len(p), nil
}

func (s *plainSums) sha1Hex() string { return hex.EncodeToString(s.sha1.Sum(nil)) }
func (s *plainSums) md5Hex() string  { return hex.EncodeToString(s.md5.Sum(nil)) }

// hasPlainSums reports whether the artifact records the plaintext digests
// DDI clients check; artifacts built before they existed do not.
func hasPlainSums(a *otav1.Artifact) bool { return a.PlainSHA1 != "" && a.PlainMD5 != "" }

// readPlaintext decrypts the stored blob into w and the plaintext hashes,
// and fails unless it decrypts to the pinned image. sha256Of is the SHA-256
// w computed, or nil to compute one here.
func (r *FirmwareReleaseReconciler) readPlaintext(ctx context.Context, art *otav1.Artifact, key []byte, w io.Writer, sha256Of func() []byte) (*plainSums, error) {
	blob, err := r.Blobs.Open(ctx, art.EncryptedSHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: open blob %s: %w", errStorage, art.EncryptedSHA256, err)
	}
	defer blob.Close()
	plain, err := envelope.NewDecryptor(blob, key)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt blob %s: %w", errStorage, art.EncryptedSHA256, err)
	}
	sums := newPlainSums()
	if sha256Of == nil {
		h := sha256.New()
		w = io.MultiWriter(w, h)
		sha256Of = func() []byte { return h.Sum(nil) }
	}
	if _, err := io.Copy(io.MultiWriter(w, sums), plain); err != nil {
		return nil, fmt.Errorf("%w: decrypt blob %s: %w", errStorage, art.EncryptedSHA256, err)
	}
	if got := hex.EncodeToString(sha256Of()); got != art.PlainSHA256 {
		return nil, fmt.Errorf("%w: blob %s decrypts to sha256 %s, want %s", errStorage, art.EncryptedSHA256, got, art.PlainSHA256)
	}
	return sums, nil
}

// backfillPlainSums records the plaintext SHA-1 and MD5 of an artifact built
// before they were computed, read back from the stored blob (no network).
// The artifact stays as it is otherwise, and so does its verification.
func (r *FirmwareReleaseReconciler) backfillPlainSums(ctx context.Context, rel *otav1.FirmwareRelease, key []byte) error {
	art := rel.Status.Artifact
	sums, err := r.readPlaintext(ctx, art, key, io.Discard, nil)
	if err != nil {
		return err
	}
	art.PlainSHA1, art.PlainMD5 = sums.sha1Hex(), sums.md5Hex()
	return nil
}

// reverify checks the signature again (keys or signature changed) by
// decrypting the stored blob: this needs no network and also proves the
// blob still decrypts to the signed image. It records the plaintext SHA-1
// and MD5 on the way, for artifacts built before they were.
func (r *FirmwareReleaseReconciler) reverify(ctx context.Context, rel *otav1.FirmwareRelease, key []byte, in *verifyInputs) (*otav1.Verification, error) {
	art := rel.Status.Artifact
	check, err := signature.NewCheck(in.Signature, in.Keys)
	if err != nil {
		return nil, fmt.Errorf("prepare signature check: %w", err)
	}
	sums, err := r.readPlaintext(ctx, art, key, check, check.SHA256)
	if err != nil {
		return nil, err
	}
	verifiedBy, err := check.Verify()
	if err != nil {
		return nil, fmt.Errorf("verify signature of %s: %w", art.PlainSHA256, err)
	}
	art.PlainSHA1, art.PlainMD5 = sums.sha1Hex(), sums.md5Hex()
	return &otav1.Verification{
		Key:          verifiedBy.Name,
		KeyID:        verifiedBy.ID,
		Signature:    base64.StdEncoding.EncodeToString(in.Signature.Raw),
		InputsDigest: in.Digest,
		Time:         metav1.NewTime(r.Clock.Now()),
	}, nil
}

// blobExists reports whether the current artifact's blob is in the store.
func (r *FirmwareReleaseReconciler) blobExists(ctx context.Context, digest string) (bool, error) {
	_, err := r.Blobs.Stat(ctx, digest)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, blobstore.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("%w: stat blob %s: %w", errStorage, digest, err)
	}
}
