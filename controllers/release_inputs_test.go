package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/envelope"
)

// sigValue is well-formed base64; these tests never get to verify it.
var sigValue = base64.StdEncoding.EncodeToString(make([]byte, 64))

// failingSecrets is an API reader whose Secret reads fail as an overloaded
// apiserver's would.
type failingSecrets struct{ client.Reader }

func (f failingSecrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok && key.Name == "vendor-keys" {
		return apierrors.NewTooManyRequests("try again later", 1)
	}
	return f.Reader.Get(ctx, key, obj, opts...)
}

func TestUnreadableInputsAreUnavailable(t *testing.T) {
	rel := &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r"},
		Spec: otav1.FirmwareReleaseSpec{Signature: otav1.Signature{
			Value:      sigValue,
			PublicKeys: []otav1.PublicKeySource{{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "cosign.pub"}}},
		}},
	}
	c := fake.NewClientBuilder().Build()
	_, err := loadVerifyInputs(context.Background(), failingSecrets{c}, rel)
	if got := classifyFailure(err); got != (failure{Reason: otav1.ReasonKeyUnavailable}) {
		t.Errorf("read error %v classified %+v, want transient %s keeping the artifact", err, got, otav1.ReasonKeyUnavailable)
	}
	rel.Spec.Signature.Value = ""
	rel.Spec.Signature.BundleRef = &otav1.ConfigMapKeyReference{Name: "sigs", Key: "b.json"}
	_, err = loadVerifyInputs(context.Background(), c, rel)
	if got := classifyFailure(err); got != (failure{Reason: otav1.ReasonBundleUnavailable}) {
		t.Errorf("missing bundle %v classified %+v, want transient %s keeping the artifact", err, got, otav1.ReasonBundleUnavailable)
	}
}

// TestReadErrorKeepsArtifact: an apiserver read error on a trusted key
// makes a Ready release not Ready and retried, and leaves its artifact,
// blob and content key alone.
func TestReadErrorKeepsArtifact(t *testing.T) {
	ctx := context.Background()
	blobs, err := blobstore.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := []byte("firmware image")
	key, err := envelope.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	w, err := blobs.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Encrypt(w, bytes.NewReader(img), key); err != nil {
		t.Fatal(err)
	}
	info, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256(img)
	art := otav1.Artifact{
		PlainSHA256: hex.EncodeToString(plain[:]), Size: int64(len(img)),
		EncryptedSHA256: info.Digest, EncryptedSize: info.Size, Suite: envelope.Suite,
		KeySecretName: "r-key-1", Version: "2.1.0", SecurityVersion: 7, Generation: 1,
	}
	rel := &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", UID: "uid-1", Generation: 1, Finalizers: []string{ReleaseFinalizer}},
		Spec: otav1.FirmwareReleaseSpec{
			Version: "2.1.0", SecurityVersion: 7,
			Source: otav1.Source{URL: "http://127.0.0.1:1/fw.bin", SHA256: art.PlainSHA256},
			Signature: otav1.Signature{
				Value:      sigValue,
				PublicKeys: []otav1.PublicKeySource{{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "cosign.pub"}}},
			},
		},
		Status: otav1.FirmwareReleaseStatus{
			ObservedGeneration: 1,
			Artifact:           &art,
			Verification:       &otav1.Verification{Key: "vendor-keys/cosign.pub", KeyID: "id", InputsDigest: "d"},
			Conditions: []metav1.Condition{
				{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: otav1.ReasonArtifactReady, ObservedGeneration: 1, LastTransitionTime: metav1.Now()},
				{Type: otav1.ConditionVerified, Status: metav1.ConditionTrue, Reason: otav1.ReasonSignatureVerified, ObservedGeneration: 1, LastTransitionTime: metav1.Now()},
			},
		},
	}
	keySecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: art.KeySecretName, Labels: map[string]string{LabelReleaseUID: "uid-1"}, Annotations: map[string]string{AnnotationBlob: info.Digest}},
		Data:       map[string][]byte{ContentKeyField: key},
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := otav1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(rel, keySecret).WithStatusSubresource(&otav1.FirmwareRelease{}).Build()
	r := &FirmwareReleaseReconciler{Client: c, APIReader: failingSecrets{c}, Recorder: &events.FakeRecorder{}, Blobs: blobs}

	_, err = r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(rel)})
	if err == nil {
		t.Fatal("Reconcile returned no error; want one, so the read is retried with backoff")
	}
	got := &otav1.FirmwareRelease{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(rel), got); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != otav1.ReasonKeyUnavailable {
		t.Errorf("Ready %+v, want False/%s", c, otav1.ReasonKeyUnavailable)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Reconciling %+v, want True", c)
	}
	if got.Status.Artifact == nil || *got.Status.Artifact != art {
		t.Errorf("artifact %+v, want it kept: %+v", got.Status.Artifact, art)
	}
	if _, err := blobs.Stat(ctx, info.Digest); errors.Is(err, blobstore.ErrNotFound) {
		t.Error("blob deleted")
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(keySecret), &corev1.Secret{}); err != nil {
		t.Errorf("content key Secret: %v", err)
	}
}
