package controllers_test

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

func sha1Hex(b []byte) string { s := sha1.Sum(b); return hex.EncodeToString(s[:]) }
func md5Hex(b []byte) string  { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// TestDDIReleaseDigestsAndFilename: a SWUpdate release records the
// plaintext SHA-1 and MD5 sha1sum and md5sum give, and the file name DDI
// clients see (derived from the source, or spec.artifactFilename).
func TestDDIReleaseDigestsAndFilename(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	img := randomImage(t, 3*16384+77)
	for _, tc := range []struct {
		name, path, filename, want string
		format                     otav1.ReleaseFormat
	}{
		{"derived", "/" + ns + "/sensor-fw", "", "sensor-fw.swu", otav1.FormatSWUpdate},
		{"named", "/" + ns + "/sensor.bin", "sensor-2.1.0.swu", "sensor-2.1.0.swu", otav1.FormatSWUpdate},
		{"rauc", "/" + ns + "/bundle.raucb", "", "bundle.raucb", otav1.FormatRAUC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel := release(ns, tc.name, images.Put(tc.path, img), img, vendor.Sign(t, img))
			rel.Spec.Format = tc.format
			rel.Spec.ArtifactFilename = tc.filename
			create(t, rel)
			got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
			art := got.Status.Artifact
			if art.PlainSHA1 != sha1Hex(img) || art.PlainMD5 != md5Hex(img) {
				t.Errorf("plainSHA1 %s, plainMD5 %s; want %s, %s", art.PlainSHA1, art.PlainMD5, sha1Hex(img), md5Hex(img))
			}
			if art.Filename != tc.want {
				t.Errorf("filename %q, want %q", art.Filename, tc.want)
			}
			if got.Spec.Format != tc.format {
				t.Errorf("spec.format %q, want %q", got.Spec.Format, tc.format)
			}
		})
	}

	// A release applied without a format is Raw, and still gets the digests.
	rel := release(ns, "raw", images.Put("/"+ns+"/raw.img", img), img, vendor.Sign(t, img))
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if got.Spec.Format != otav1.FormatRaw || got.Status.Artifact.Filename != "raw.img" || got.Status.Artifact.PlainSHA1 != sha1Hex(img) {
		t.Errorf("raw release: format %q, artifact %+v", got.Spec.Format, got.Status.Artifact)
	}
}

// TestPlainDigestsBackfilled: an artifact built before the plaintext SHA-1
// and MD5 were recorded gets them from the stored blob at the next
// reconcile, without a refetch and without a new verification; and a
// re-verification records them too.
func TestPlainDigestsBackfilled(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 50_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM, "backup.pub": releasetest.NewECDSAKey(t).PEM})
	path := "/" + ns + "/sensor.swu"
	rel := release(ns, "sensor", images.Put(path, img), img, vendor.Sign(t, img))
	rel.Spec.Format = otav1.FormatSWUpdate
	create(t, rel)
	first := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	images.Put(path, []byte("gone")) // any refetch now fails the digest

	// What an older controller wrote: no digests, no filename.
	strip := func() {
		t.Helper()
		old := &otav1.FirmwareRelease{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rel), old); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(old.DeepCopy())
		old.Status.Artifact.PlainSHA1, old.Status.Artifact.PlainMD5, old.Status.Artifact.Filename = "", "", ""
		if err := k8s.Status().Patch(ctx, old, patch); err != nil {
			t.Fatal(err)
		}
	}
	strip()
	// Any reconcile will do: touch the key Secret (the release watches it).
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vendor-keys"}}
	sp := client.MergeFrom(s.DeepCopy())
	s.Labels = map[string]string{"touched": "yes"}
	if err := k8s.Patch(ctx, s, sp); err != nil {
		t.Fatal(err)
	}
	got := waitRelease(t, client.ObjectKeyFromObject(rel), func(r *otav1.FirmwareRelease) error {
		if a := r.Status.Artifact; a == nil || a.PlainSHA1 == "" {
			return fmt.Errorf("artifact %+v not backfilled yet", a)
		}
		return nil
	})
	if *got.Status.Artifact != *first.Status.Artifact {
		t.Errorf("artifact %+v, want %+v (backfilled, not rebuilt)", got.Status.Artifact, first.Status.Artifact)
	}
	if !got.Status.Verification.Time.Equal(&first.Status.Verification.Time) || got.Status.Verification.InputsDigest != first.Status.Verification.InputsDigest {
		t.Errorf("verification changed by the backfill: %+v → %+v", first.Status.Verification, got.Status.Verification)
	}
	checkServable(t, got)

	// A re-verification (another trusted key) records them as well.
	strip()
	updateRelease(t, rel, func(r *otav1.FirmwareRelease) {
		r.Spec.Signature.PublicKeys = append(r.Spec.Signature.PublicKeys, otav1.PublicKeySource{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "backup.pub"}})
	})
	got = waitRelease(t, client.ObjectKeyFromObject(rel), readyAt(rel.Generation))
	a := got.Status.Artifact
	if a.PlainSHA1 != sha1Hex(img) || a.PlainMD5 != md5Hex(img) || a.Filename != "sensor.swu" || a.EncryptedSHA256 != first.Status.Artifact.EncryptedSHA256 {
		t.Errorf("after re-verification: artifact %+v", a)
	}
	if got.Status.Verification.InputsDigest == first.Status.Verification.InputsDigest {
		t.Error("not re-verified: inputs digest unchanged")
	}
}
