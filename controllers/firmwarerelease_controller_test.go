package controllers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

func randomImage(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

func createKeySecret(t *testing.T, ns, name string, keys map[string][]byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: keys}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// release builds a FirmwareRelease for img at url, signed with sig and
// trusting the key cosign.pub of Secret vendor-keys.
func release(ns, name, url string, img, sig []byte) *otav1.FirmwareRelease {
	return releasetest.Release(ns, name, "2.1.0", 7, url, img, sig)
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// decryptArtifact opens the release's blob with its content key.
func decryptArtifact(t *testing.T, rel *otav1.FirmwareRelease) []byte {
	t.Helper()
	ctx := context.Background()
	art := rel.Status.Artifact
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: rel.Namespace, Name: art.KeySecretName}, &s); err != nil {
		t.Fatal(err)
	}
	blob, err := blobs.Open(ctx, art.EncryptedSHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	if blob.Info().Size != art.EncryptedSize {
		t.Errorf("blob is %d bytes, status says %d", blob.Info().Size, art.EncryptedSize)
	}
	plain, err := envelope.NewDecryptor(blob, s.Data[controllers.ContentKeyField])
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(plain)
	if err != nil {
		t.Fatalf("decrypt artifact: %v", err)
	}
	return out
}

// waitEvent waits for an event about obj with the given reason and type.
func waitEvent(t *testing.T, obj client.Object, eventType, reason string) *eventsv1.Event {
	t.Helper()
	var found *eventsv1.Event
	releasetest.Eventually(t, 10*time.Second, func() error {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(obj.GetNamespace())); err != nil {
			return err
		}
		for i := range list.Items {
			e := &list.Items[i]
			if e.Regarding.Name == obj.GetName() && e.Reason == reason && e.Type == eventType {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event %s for %s among %d events", eventType, reason, obj.GetName(), len(list.Items))
	})
	return found
}

func keySecretsOf(t *testing.T, rel *otav1.FirmwareRelease) []corev1.Secret {
	t.Helper()
	var list corev1.SecretList
	if err := k8s.List(context.Background(), &list, client.InNamespace(rel.Namespace), client.MatchingLabels{controllers.LabelReleaseUID: string(rel.UID)}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// updateRelease changes a release's spec, retrying when the cached copy it
// started from was stale.
func updateRelease(t *testing.T, rel *otav1.FirmwareRelease, mutate func(*otav1.FirmwareRelease)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rel), rel); err != nil {
			return err
		}
		mutate(rel)
		return k8s.Update(context.Background(), rel)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGoodReleaseBecomesReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(testing.TB) releasetest.VendorKey
		size int
	}{
		{"ecdsa-p256", releasetest.NewECDSAKey, 100_000},
		{"ed25519", releasetest.NewEd25519Key, 3*16384 + 5},
		{"empty-image", releasetest.NewECDSAKey, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			key := tc.key(t)
			img := randomImage(t, tc.size)
			createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": key.PEM})
			rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, key.Sign(t, img))
			rel.Spec.Source.Size = ptr.To(int64(len(img)))
			create(t, rel)

			got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
			if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionVerified); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "vendor-keys/cosign.pub") {
				t.Errorf("Verified condition = %+v, want True naming vendor-keys/cosign.pub", c)
			}
			for _, typ := range []string{otav1.ConditionReconciling, otav1.ConditionStalled} {
				if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil {
					t.Errorf("%s present on a Ready release: %+v", typ, c)
				}
			}
			if got.Status.Verification.Signature != rel.Spec.Signature.Value {
				t.Errorf("status.verification.signature = %q, want spec.signature.value", got.Status.Verification.Signature)
			}
			if got.Status.ObservedGeneration != got.Generation {
				t.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
			}
			art := got.Status.Artifact
			if art.PlainSHA256 != digest(img) || art.Size != int64(len(img)) || art.Suite != "otaflow-enc/v1" {
				t.Errorf("artifact %+v does not describe the image", art)
			}
			if art.Version != "2.1.0" || art.SecurityVersion != 7 || art.Generation != got.Generation {
				t.Errorf("artifact version %q, securityVersion %d, generation %d; want 2.1.0, 7, %d", art.Version, art.SecurityVersion, art.Generation, got.Generation)
			}
			if art.EncryptedSize != envelope.EncryptedSize(int64(len(img)), envelope.DefaultChunkLog2) {
				t.Errorf("encrypted size %d, want %d", art.EncryptedSize, envelope.EncryptedSize(int64(len(img)), envelope.DefaultChunkLog2))
			}
			if plain := decryptArtifact(t, got); !bytes.Equal(plain, img) {
				t.Fatalf("blob decrypts to %d bytes that differ from the %d-byte image", len(plain), len(img))
			}

			// The content key lives in an immutable Secret owned by the release.
			var s corev1.Secret
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: art.KeySecretName}, &s); err != nil {
				t.Fatal(err)
			}
			if s.Immutable == nil || !*s.Immutable || s.Type != controllers.ContentKeySecretType || len(s.Data[controllers.ContentKeyField]) != 32 {
				t.Errorf("key Secret: immutable=%v type=%s keylen=%d", s.Immutable, s.Type, len(s.Data[controllers.ContentKeyField]))
			}
			if owner := metav1.GetControllerOf(&s); owner == nil || owner.UID != got.UID {
				t.Errorf("key Secret not controlled by the release: %+v", s.OwnerReferences)
			}
			waitEvent(t, rel, corev1.EventTypeNormal, otav1.ReasonArtifactReady)

			// Built once: later reconciles (the key Secret's own watch event
			// among them) neither rebuild nor collect the artifact.
			time.Sleep(500 * time.Millisecond)
			var again otav1.FirmwareRelease
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rel), &again); err != nil {
				t.Fatal(err)
			}
			if again.Status.Artifact == nil || *again.Status.Artifact != *art {
				t.Errorf("artifact changed after Ready: %+v → %+v", art, again.Status.Artifact)
			}
			if n := len(keySecretsOf(t, got)); n != 1 {
				t.Errorf("%d key Secrets for one artifact, want 1", n)
			}
		})
	}
}

func TestReleaseFailures(t *testing.T) {
	vendor := releasetest.NewECDSAKey(t)
	other := releasetest.NewECDSAKey(t)
	img := randomImage(t, 50_000)
	big := randomImage(t, maxImageSize+1)

	cases := []struct {
		name     string
		mutate   func(rel *otav1.FirmwareRelease, ns string)
		reason   string
		verified metav1.ConditionStatus
	}{
		{"wrong digest", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Source.SHA256 = digest([]byte("another image"))
		}, otav1.ReasonDigestMismatch, metav1.ConditionFalse},
		{"malformed signature", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Signature.Value = base64.StdEncoding.EncodeToString([]byte("definitely not a signature"))
		}, otav1.ReasonSignatureMalformed, metav1.ConditionFalse},
		{"signature over other bytes", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Signature.Value = base64.StdEncoding.EncodeToString(vendor.Sign(t, []byte("other image")))
		}, otav1.ReasonSignatureNotTrusted, metav1.ConditionFalse},
		{"untrusted key", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Signature.Value = base64.StdEncoding.EncodeToString(other.Sign(t, img))
		}, otav1.ReasonSignatureNotTrusted, metav1.ConditionFalse},
		{"oversize image", func(rel *otav1.FirmwareRelease, ns string) {
			rel.Spec.Source.URL = images.Put("/"+ns+"/big.bin", big)
			rel.Spec.Source.SHA256 = digest(big)
			rel.Spec.Signature.Value = base64.StdEncoding.EncodeToString(vendor.Sign(t, big))
		}, otav1.ReasonImageTooLarge, metav1.ConditionUnknown},
		{"size mismatch", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Source.Size = ptr.To(int64(len(img) - 1))
		}, otav1.ReasonSizeMismatch, metav1.ConditionUnknown},
		{"key not PEM", func(rel *otav1.FirmwareRelease, _ string) {
			rel.Spec.Signature.PublicKeys[0].SecretRef.Key = "garbage.pub"
		}, otav1.ReasonKeyInvalid, metav1.ConditionFalse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM, "garbage.pub": []byte("not a key")})
			rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
			tc.mutate(rel, ns)
			create(t, rel)

			got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionStalled, metav1.ConditionTrue, tc.reason)
			ready := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != tc.reason || ready.Message == "" {
				t.Errorf("Ready = %+v, want False/%s with a message", ready, tc.reason)
			}
			if v := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionVerified); v == nil || v.Status != tc.verified {
				t.Errorf("Verified = %+v, want %s", v, tc.verified)
			}
			if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c != nil {
				t.Errorf("Reconciling present on a stalled release: %+v", c)
			}
			if got.Status.Artifact != nil {
				t.Errorf("artifact set on a failed release: %+v", got.Status.Artifact)
			}
			if n := len(keySecretsOf(t, got)); n != 0 {
				t.Errorf("%d key Secrets left for a failed release", n)
			}
			waitEvent(t, rel, corev1.EventTypeWarning, tc.reason)
		})
	}
}

func TestUnreachableSourceRecovers(t *testing.T) {
	ns := newNamespace(t)
	key := releasetest.NewECDSAKey(t)
	img := randomImage(t, 20_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": key.PEM})
	path := "/" + ns + "/late.bin"
	rel := release(ns, "late", images.At(path), img, key.Sign(t, img))
	create(t, rel)

	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonFetchFailed)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != otav1.ReasonFetchFailed || !strings.Contains(c.Message, "404") {
		t.Errorf("Ready = %+v, want False/FetchFailed mentioning 404", c)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled); c != nil {
		t.Errorf("a transient failure must not stall: %+v", c)
	}
	waitEvent(t, rel, corev1.EventTypeWarning, otav1.ReasonFetchFailed)

	images.Put(path, img) // the URL comes back
	got = waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c != nil {
		t.Errorf("Reconciling left after recovery: %+v", c)
	}
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("recovered artifact does not decrypt to the image")
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	ns := newNamespace(t)
	key := releasetest.NewECDSAKey(t)
	img := randomImage(t, 100)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": key.PEM})
	// Port 1 on loopback: nothing listens there.
	rel := release(ns, "refused", allowed("http://127.0.0.1:1/fw.bin", "refused"), img, key.Sign(t, img))
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionFalse, otav1.ReasonFetchFailed)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Reconciling = %+v, want True while retrying", c)
	}
}

// TestReverifyOnKeyChange: trusted keys are re-checked whenever they change;
// a release no longer signed by a trusted key is withdrawn at once, and comes
// back when the key is trusted again.
func TestReverifyOnKeyChange(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 40_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	ready := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	firstBlob := ready.Status.Artifact.EncryptedSHA256

	// Rotate the Secret to another key: the stored artifact fails re-verification.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-keys"}}
	patch := client.MergeFrom(s.DeepCopy())
	s.Data = map[string][]byte{"cosign.pub": releasetest.NewECDSAKey(t).PEM}
	if err := k8s.Patch(ctx, s, patch); err != nil {
		t.Fatal(err)
	}
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionVerified, metav1.ConditionFalse, otav1.ReasonSignatureNotTrusted)
	if got.Status.Artifact != nil {
		t.Errorf("artifact still offered after its signature stopped verifying: %+v", got.Status.Artifact)
	}
	releasetest.Eventually(t, 10*time.Second, func() error {
		if _, err := blobs.Stat(ctx, firstBlob); !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("withdrawn blob still stored (stat: %v)", err)
		}
		if n := len(keySecretsOf(t, got)); n != 0 {
			return fmt.Errorf("%d key Secrets left", n)
		}
		return nil
	})

	// Trust the vendor key again, through a spec change to a second Secret.
	createKeySecret(t, ns, "vendor-keys-2", map[string][]byte{"cosign.pub": vendor.PEM})
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) {
		r.Spec.Signature.PublicKeys = append(r.Spec.Signature.PublicKeys, otav1.PublicKeySource{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys-2", Key: "cosign.pub"}})
	})
	got = waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if got.Status.Verification.Key != "vendor-keys-2/cosign.pub" {
		t.Errorf("verified by %q, want vendor-keys-2/cosign.pub", got.Status.Verification.Key)
	}
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("rebuilt artifact does not decrypt to the image")
	}
}

// TestReverifyWithoutRefetch: adding a trusted key re-verifies the stored
// blob (decrypting it) without fetching the image again.
func TestReverifyWithoutRefetch(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewEd25519Key(t)
	img := randomImage(t, 70_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM, "backup.pub": releasetest.NewECDSAKey(t).PEM})
	path := "/" + ns + "/sensor.bin"
	rel := release(ns, "sensor", images.Put(path, img), img, vendor.Sign(t, img))
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)

	images.Put(path, []byte("the source is gone now")) // a refetch would fail the digest
	rel = first.DeepCopy()
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) {
		r.Spec.Signature.PublicKeys = append(r.Spec.Signature.PublicKeys, otav1.PublicKeySource{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "backup.pub"}})
	})
	want := rel.Generation
	// Ready again only once the stored artifact is confirmed for the new
	// generation (while it is re-verified, Ready is False).
	releasetest.Eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rel), rel); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != want {
			return fmt.Errorf("Ready %+v, want True at generation %d", c, want)
		}
		return nil
	})
	if rel.Status.Artifact.Generation != want {
		t.Errorf("artifact.generation %d after re-verification, want %d", rel.Status.Artifact.Generation, want)
	}
	if rel.Status.Artifact.EncryptedSHA256 != first.Status.Artifact.EncryptedSHA256 {
		t.Errorf("artifact rebuilt (%s → %s); re-verification should reuse the stored blob", first.Status.Artifact.EncryptedSHA256, rel.Status.Artifact.EncryptedSHA256)
	}
	if rel.Status.Verification.InputsDigest == first.Status.Verification.InputsDigest {
		t.Error("verification inputs digest did not change")
	}
}

func TestBundleSignature(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 30_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	d := sha256.Sum256(img)
	sig := vendor.Sign(t, img)
	bundle, err := json.Marshal(map[string]any{
		"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
		"verificationMaterial": map[string]any{
			"publicKey": map[string]any{"hint": ""},
		},
		"messageSignature": map[string]any{
			"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": base64.StdEncoding.EncodeToString(d[:])},
			"signature":     base64.StdEncoding.EncodeToString(sig),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sigs"}, Data: map[string]string{"sensor.sigstore.json": string(bundle)}}); err != nil {
		t.Fatal(err)
	}
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, nil)
	rel.Spec.Signature.Value = ""
	rel.Spec.Signature.BundleRef = &otav1.ConfigMapKeyReference{Name: "sigs", Key: "sensor.sigstore.json"}
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("artifact does not decrypt to the image")
	}
	// The bundle's signature is recorded for the OTA server to hand to devices.
	if got.Status.Verification.Signature != base64.StdEncoding.EncodeToString(sig) {
		t.Errorf("status.verification.signature = %q, want the bundle's signature", got.Status.Verification.Signature)
	}
}

// TestMissingKeySecretAppearsLater: a GitOps sync may apply the release
// before the Secret; the Secret watch brings the release back.
func TestMissingKeySecretAppearsLater(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 10_000)
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	// A missing input is waited for (Reconciling, retried), no longer a
	// Stalled failure: it says nothing about the image.
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonKeyUnavailable)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != otav1.ReasonKeyUnavailable {
		t.Errorf("Ready = %+v, want False/%s", c, otav1.ReasonKeyUnavailable)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled); c != nil {
		t.Errorf("a missing key Secret must not stall: %+v", c)
	}
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
}

// TestDeletionWaitsForRollouts: the finalizer keeps the release (and its
// blob and key) while a Rollout references it, then removes both.
func TestDeletionWaitsForRollouts(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 10_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	blob := got.Status.Artifact.EncryptedSHA256

	ro := &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sensor-eu"},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "sensor"},
			Waves:      []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}},
		},
	}
	create(t, ro)
	releasetest.Eventually(t, 5*time.Second, func() error { // the cache must see the rollout
		var list otav1.RolloutList
		return k8s.List(ctx, &list, client.InNamespace(ns))
	})
	if err := k8s.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, got, corev1.EventTypeNormal, "DeletionBlocked")
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(got), got); err != nil {
		t.Fatalf("release gone while a rollout references it: %v", err)
	}
	if _, err := blobs.Stat(ctx, blob); err != nil {
		t.Fatalf("blob removed while a rollout references the release: %v", err)
	}

	if err := k8s.Delete(ctx, ro); err != nil {
		t.Fatal(err)
	}
	releasetest.Eventually(t, 10*time.Second, func() error {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(got), &otav1.FirmwareRelease{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("release still there (get: %v)", err)
		}
		if _, err := blobs.Stat(ctx, blob); !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("blob still stored (stat: %v)", err)
		}
		return nil
	})
	if n := len(keySecretsOf(t, got)); n != 0 {
		t.Errorf("%d key Secrets left after deletion", n)
	}
}

// waitRelease polls a release until check passes and returns it.
func waitRelease(t *testing.T, key client.ObjectKey, check func(*otav1.FirmwareRelease) error) *otav1.FirmwareRelease {
	t.Helper()
	rel := &otav1.FirmwareRelease{}
	// Generous: under make test's parallel packages (-race) a build that a
	// stale watch event starts just before the step under test can take
	// tens of seconds to finish on two cores.
	releasetest.Eventually(t, 60*time.Second, func() error {
		if err := k8s.Get(context.Background(), key, rel); err != nil {
			return err
		}
		return check(rel)
	})
	return rel
}

// readyAt reports whether Ready is True for generation gen with an artifact
// confirmed for it.
func readyAt(gen int64) func(*otav1.FirmwareRelease) error {
	return func(rel *otav1.FirmwareRelease) error {
		c := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gen {
			return fmt.Errorf("Ready %+v, want True at generation %d", c, gen)
		}
		if a := rel.Status.Artifact; a == nil || a.Generation != gen {
			return fmt.Errorf("artifact %+v not confirmed for generation %d", a, gen)
		}
		return nil
	}
}

// checkServable fails when the release is Ready at a generation its artifact
// is not confirmed for: the OTA server must never see that.
func checkServable(t *testing.T, rel *otav1.FirmwareRelease) {
	t.Helper()
	c := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		return
	}
	if a := rel.Status.Artifact; a == nil || a.Generation != c.ObservedGeneration || c.ObservedGeneration != rel.Status.ObservedGeneration {
		t.Errorf("Ready at generation %d (observedGeneration %d) with artifact %+v", c.ObservedGeneration, rel.Status.ObservedGeneration, a)
	}
}

// blockingServer serves img once release is closed.
func blockingServer(t *testing.T, img []byte) (url string, release func()) {
	t.Helper()
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(img)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return allowed(srv.URL, "blocking") + "/fw.bin", release
}

// TestURLEditConfirmsWithoutRefetch: a new source.url does not change the
// pinned image, so the stored artifact is confirmed for the new generation
// as it is; the release is never Ready at a generation its artifact was not
// confirmed for.
func TestURLEditConfirmsWithoutRefetch(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 30_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if first.Status.Artifact.Generation != first.Generation {
		t.Fatalf("artifact.generation %d, generation %d", first.Status.Artifact.Generation, first.Generation)
	}

	rel = first.DeepCopy()
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) {
		r.Spec.Source.URL = images.At("/" + ns + "/moved.bin") // 404: a refetch would fail
	})
	want := rel.Generation
	got := waitRelease(t, client.ObjectKeyFromObject(rel), func(r *otav1.FirmwareRelease) error {
		checkServable(t, r)
		return readyAt(want)(r)
	})
	if *got.Status.Artifact != (otav1.Artifact{
		PlainSHA256: first.Status.Artifact.PlainSHA256, Size: first.Status.Artifact.Size,
		EncryptedSHA256: first.Status.Artifact.EncryptedSHA256, EncryptedSize: first.Status.Artifact.EncryptedSize,
		Suite: first.Status.Artifact.Suite, KeySecretName: first.Status.Artifact.KeySecretName,
		Version: "2.1.0", SecurityVersion: 7, Generation: want,
		// The name DDI clients see stays that of the first source.
		PlainSHA1: first.Status.Artifact.PlainSHA1, PlainMD5: first.Status.Artifact.PlainMD5, Filename: "sensor.bin",
	}) {
		t.Errorf("artifact %+v after a URL edit, want the first one %+v at generation %d", got.Status.Artifact, first.Status.Artifact, want)
	}
}

// TestNotReadyWhileRebuilding: a release edited while its artifact must be
// rebuilt (here the blob was lost) is not Ready for the new generation until
// the rebuild ends.
func TestNotReadyWhileRebuilding(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 30_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)

	if err := blobs.Delete(ctx, first.Status.Artifact.EncryptedSHA256); err != nil {
		t.Fatal(err)
	}
	url, serve := blockingServer(t, img)
	rel = first.DeepCopy()
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) { r.Spec.Source.URL = url })
	want := rel.Generation

	got := waitRelease(t, client.ObjectKeyFromObject(rel), func(r *otav1.FirmwareRelease) error {
		c := meta.FindStatusCondition(r.Status.Conditions, otav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != otav1.ReasonProgressing || c.ObservedGeneration != want {
			return fmt.Errorf("Ready %+v, want False/Progressing at generation %d", c, want)
		}
		return nil
	})
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Reconciling %+v while rebuilding, want True", c)
	}
	if a := got.Status.Artifact; a != nil && a.Generation == want {
		t.Errorf("artifact %+v confirmed before the rebuild ended", a)
	}

	serve()
	got = waitRelease(t, client.ObjectKeyFromObject(rel), readyAt(want))
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("rebuilt artifact does not decrypt to the image")
	}
	if n := len(keySecretsOf(t, got)); n != 1 {
		t.Errorf("%d key Secrets after the rebuild, want 1", n)
	}
}

// TestSignatureInputsUnavailableKeepArtifact: a missing or unreadable
// signature input makes the release not Ready, and retried, but never costs
// the artifact. This is a GitOps prune and re-create of the key Secret, or a
// sync that applies a new bundle's ConfigMap after the release.
func TestSignatureInputsUnavailableKeepArtifact(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 30_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	path := "/" + ns + "/sensor.bin"
	sig := vendor.Sign(t, img)
	rel := release(ns, "sensor", images.Put(path, img), img, sig)
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	art := *first.Status.Artifact
	images.Put(path, []byte("gone")) // any refetch now fails the digest

	// kept checks the artifact, its blob and its content key all stayed,
	// also after a few retries (and garbage collections) had their chance.
	kept := func(t *testing.T, reason string, gen int64) {
		t.Helper()
		got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionFalse, reason)
		time.Sleep(1500 * time.Millisecond) // retries back off from 100ms to 1s here
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rel), got); err != nil {
			t.Fatal(err)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != reason || c.ObservedGeneration != gen {
			t.Errorf("Ready %+v, want False/%s at generation %d", c, reason, gen)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason {
			t.Errorf("Reconciling %+v, want True/%s (retried)", c, reason)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled); c != nil {
			t.Errorf("Stalled %+v for a missing input", c)
		}
		if s := kstatusOf(t, got); s != status.InProgressStatus { // Flux waits, it does not fail the sync
			t.Errorf("kstatus %s while an input is missing, want InProgress", s)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionVerified); c == nil || c.Status != metav1.ConditionUnknown || c.Reason != reason {
			t.Errorf("Verified %+v, want Unknown/%s", c, reason)
		}
		if a := got.Status.Artifact; a == nil || a.EncryptedSHA256 != art.EncryptedSHA256 || a.KeySecretName != art.KeySecretName {
			t.Errorf("artifact %+v, want it kept: %+v", a, art)
		}
		if _, err := blobs.Stat(ctx, art.EncryptedSHA256); err != nil {
			t.Errorf("blob of the kept artifact: %v", err)
		}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: art.KeySecretName}, &corev1.Secret{}); err != nil {
			t.Errorf("content key Secret of the kept artifact: %v", err)
		}
	}
	back := func(t *testing.T, gen int64) {
		t.Helper()
		got := waitRelease(t, client.ObjectKeyFromObject(rel), readyAt(gen))
		if a := got.Status.Artifact; a.EncryptedSHA256 != art.EncryptedSHA256 || a.KeySecretName != art.KeySecretName {
			t.Errorf("artifact %+v after the input came back, want the same one %+v", a, art)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c != nil {
			t.Errorf("Reconciling left: %+v", c)
		}
	}
	gen := first.Generation

	t.Run("key Secret lacks the key", func(t *testing.T) {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vendor-keys"}, s); err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"other.pub": vendor.PEM}
		if err := k8s.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		kept(t, otav1.ReasonKeyUnavailable, gen)
		s.Data = map[string][]byte{"cosign.pub": vendor.PEM}
		if err := k8s.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		back(t, gen)
	})

	t.Run("key Secret pruned and re-created", func(t *testing.T) {
		if err := k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-keys"}}); err != nil {
			t.Fatal(err)
		}
		kept(t, otav1.ReasonKeyUnavailable, gen)
		createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
		back(t, gen)
	})

	t.Run("bundle ConfigMap applied after the release", func(t *testing.T) {
		// Not Ready for the new generation until the bundle is there and
		// the stored artifact verified against it.
		rel = first.DeepCopy()
		updateRelease(t, rel, func(r *otav1.FirmwareRelease) {
			r.Spec.Signature.Value = ""
			r.Spec.Signature.BundleRef = &otav1.ConfigMapKeyReference{Name: "sigs", Key: "sensor.sigstore.json"}
		})
		gen = rel.Generation
		kept(t, otav1.ReasonBundleUnavailable, gen)
		d := sha256.Sum256(img)
		bundle, err := json.Marshal(map[string]any{
			"mediaType":            "application/vnd.dev.sigstore.bundle.v0.3+json",
			"verificationMaterial": map[string]any{"publicKey": map[string]any{"hint": ""}},
			"messageSignature": map[string]any{
				"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": base64.StdEncoding.EncodeToString(d[:])},
				"signature":     base64.StdEncoding.EncodeToString(sig),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sigs"}, Data: map[string]string{"sensor.sigstore.json": string(bundle)}}); err != nil {
			t.Fatal(err)
		}
		back(t, gen)
	})
}

// TestPinnedImageChangeWithdraws: when the spec pins another image (here a
// size the stored one does not have), the stored artifact is withdrawn and
// removed, not kept while the new one fails.
func TestPinnedImageChangeWithdraws(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 20_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", images.Put("/"+ns+"/sensor.bin", img), img, vendor.Sign(t, img))
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)

	rel = first.DeepCopy()
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) { r.Spec.Source.Size = ptr.To(int64(len(img) + 1)) })
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionStalled, metav1.ConditionTrue, otav1.ReasonSizeMismatch)
	if got.Status.Artifact != nil {
		t.Errorf("artifact of another image still offered: %+v", got.Status.Artifact)
	}
	releasetest.Eventually(t, 10*time.Second, func() error {
		if _, err := blobs.Stat(ctx, first.Status.Artifact.EncryptedSHA256); !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("withdrawn blob still stored (stat: %v)", err)
		}
		if n := len(keySecretsOf(t, got)); n != 0 {
			return fmt.Errorf("%d key Secrets left", n)
		}
		return nil
	})
}

// TestArtifactFromOlderControllerCompleted: an artifact written before
// status.artifact had version, securityVersion and generation gets them at
// the next reconcile, without a rebuild.
func TestArtifactFromOlderControllerCompleted(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 20_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	path := "/" + ns + "/sensor.bin"
	rel := release(ns, "sensor", images.Put(path, img), img, vendor.Sign(t, img))
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	images.Put(path, []byte("gone")) // any refetch now fails the digest

	old := first.DeepCopy()
	patch := client.MergeFrom(old.DeepCopy())
	old.Status.Artifact.Version, old.Status.Artifact.SecurityVersion, old.Status.Artifact.Generation = "", 0, 0
	if err := k8s.Status().Patch(ctx, old, patch); err != nil {
		t.Fatal(err)
	}
	waitRelease(t, client.ObjectKeyFromObject(rel), func(r *otav1.FirmwareRelease) error {
		if r.Status.Artifact.Generation != 0 {
			return fmt.Errorf("cache still has artifact %+v", r.Status.Artifact)
		}
		return nil
	})
	// Any reconcile will do: touch the key Secret (the release watches it).
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-keys"}}
	sp := client.MergeFrom(s.DeepCopy())
	s.Labels = map[string]string{"touched": "yes"}
	if err := k8s.Patch(ctx, s, sp); err != nil {
		t.Fatal(err)
	}
	got := waitRelease(t, client.ObjectKeyFromObject(rel), readyAt(first.Generation))
	want := *first.Status.Artifact
	if *got.Status.Artifact != want {
		t.Errorf("artifact %+v, want %+v (filled in, not rebuilt)", got.Status.Artifact, want)
	}
}

// TestBuildsRunConcurrently: two releases whose image servers answer only
// once both downloads are in flight become Ready: one slow image does not
// hold up another release's build.
func TestBuildsRunConcurrently(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	var mu sync.Mutex
	waiting := 0
	both := make(chan struct{})
	imgs := map[string][]byte{"/a.bin": randomImage(t, 20_000), "/b.bin": randomImage(t, 20_000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if waiting++; waiting == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
			_, _ = w.Write(imgs[r.URL.Path])
		case <-time.After(20 * time.Second):
			t.Errorf("%s: the other release's build did not start within 20s", r.URL.Path)
			http.Error(w, "the other build never started", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	var rels []*otav1.FirmwareRelease
	for _, name := range []string{"a", "b"} {
		img := imgs["/"+name+".bin"]
		rel := release(ns, name, allowed(srv.URL, "concurrent")+"/"+name+".bin", img, vendor.Sign(t, img))
		create(t, rel)
		rels = append(rels, rel)
	}
	for _, rel := range rels {
		waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	}
}

// TestBuildsOnce: a new release is fetched and built once. The key Secret
// a build writes starts the next reconcile at once, usually before the
// status patch that recorded the artifact reaches the cache; without the
// live check that reconcile built the release a second time.
func TestBuildsOnce(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	for i := range 5 {
		img := randomImage(t, 30_000)
		var fetches atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			_, _ = w.Write(img)
		}))
		defer srv.Close()
		rel := release(ns, fmt.Sprintf("once-%d", i), allowed(srv.URL, fmt.Sprintf("once-%d", i))+"/fw.bin", img, vendor.Sign(t, img))
		create(t, rel)
		got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
		// Long enough for a second reconcile to have fetched.
		time.Sleep(500 * time.Millisecond)
		if n := fetches.Load(); n != 1 {
			t.Errorf("release %d fetched %d times, want 1", i, n)
		}
		if n := len(keySecretsOf(t, got)); n != 1 {
			t.Errorf("release %d has %d key Secrets, want 1", i, n)
		}
	}
}
