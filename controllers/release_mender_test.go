package controllers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

// menderFixture is an artifact written by the real mender-artifact
// (internal/menderartifact/testdata/README.md).
func menderFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../internal/menderartifact/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMenderRelease: a Mender release records its artifact's header; an
// artifact not compatible with every device type of the release, or an
// image that is no Mender artifact, fails permanently with a reason that
// says so and nothing is served.
func TestMenderRelease(t *testing.T) {
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	art := menderFixture(t, "module-gzip.mender") // release-2.1.0, sensor-v1 and sensor-v2

	rel := release(ns, "ok", images.Put("/"+ns+"/ok.mender", art), art, vendor.Sign(t, art))
	rel.Spec.Format = otav1.FormatMender
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	m := got.Status.Artifact.Mender
	if m == nil || m.Name != "release-2.1.0" || !slices.Equal(m.DeviceTypes, []string{"sensor-v1", "sensor-v2"}) ||
		!slices.Equal(m.PayloadTypes, []string{"otaflow-test"}) || m.Signed {
		t.Fatalf("status.artifact.mender = %+v", m)
	}
	if got.Status.Artifact.Filename != "ok.mender" {
		t.Errorf("filename %q, want ok.mender", got.Status.Artifact.Filename)
	}

	mismatch := release(ns, "other-type", images.Put("/"+ns+"/other.mender", art), art, vendor.Sign(t, art))
	mismatch.Spec.Format = otav1.FormatMender
	mismatch.Spec.Compatibility.DeviceTypes = []string{"sensor-v1", "gateway-v3"}
	create(t, mismatch)
	got = waitCondition(t, client.ObjectKeyFromObject(mismatch), otav1.ConditionReady, metav1.ConditionFalse, otav1.ReasonMenderArtifactMismatch)
	c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady)
	if !strings.Contains(c.Message, "gateway-v3") || !strings.Contains(c.Message, "release-2.1.0") {
		t.Errorf("message %q does not name the artifact and the missing type", c.Message)
	}
	if got.Status.Artifact != nil {
		t.Errorf("a mismatched artifact is recorded: %+v", got.Status.Artifact)
	}

	raw := randomImage(t, 20_000)
	notMender := release(ns, "not-mender", images.Put("/"+ns+"/raw.mender", raw), raw, vendor.Sign(t, raw))
	notMender.Spec.Format = otav1.FormatMender
	create(t, notMender)
	got = waitCondition(t, client.ObjectKeyFromObject(notMender), otav1.ConditionReady, metav1.ConditionFalse, otav1.ReasonMenderArtifactInvalid)
	if got.Status.Artifact != nil {
		t.Errorf("an invalid artifact is recorded: %+v", got.Status.Artifact)
	}

	// The same bytes as a raw image are fine: only Mender releases read
	// the header.
	asRaw := release(ns, "as-raw", images.Put("/"+ns+"/raw.img", raw), raw, vendor.Sign(t, raw))
	create(t, asRaw)
	got = waitCondition(t, client.ObjectKeyFromObject(asRaw), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if got.Status.Artifact.Mender != nil {
		t.Errorf("a raw release records a Mender header: %+v", got.Status.Artifact.Mender)
	}
}

// TestMenderArtifactFilenameRule: the API refuses a Mender release whose
// artifactFilename does not end in .mender.
func TestMenderArtifactFilenameRule(t *testing.T) {
	ns := newNamespace(t)
	img := []byte("x")
	rel := release(ns, "bad-name", "https://example.com/fw.bin", img, img)
	rel.Spec.Format = otav1.FormatMender
	rel.Spec.ArtifactFilename = "fw.bin"
	err := k8s.Create(context.Background(), rel)
	if err == nil || !strings.Contains(err.Error(), "must end in .mender") {
		t.Fatalf("create: %v, want the .mender rule", err)
	}
}

// TestMenderEnrollmentKeys: preauthorized keys the server cannot use make
// the enrollment not Ready, naming the entry; usable ones make it Ready,
// and the API refuses an enrollment through which no Mender device could
// be accepted.
func TestMenderEnrollmentKeys(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"},
		Data: map[string][]byte{"token": []byte(strings.Repeat("t", otav1.MinEnrollmentTokenLength))}}); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	good := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	bad := "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----"

	none := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "closed"}, Spec: otav1.DeviceEnrollmentSpec{
		TokenSecretRef: otav1.TokenSecretReference{Name: "tenant"}, Mender: &otav1.MenderEnrollment{DeviceType: "sensor-v1"}}}
	if err := k8s.Create(ctx, none); err == nil || !strings.Contains(err.Error(), "autoAccept") {
		t.Fatalf("create without a way in: %v, want it refused", err)
	}

	e := &otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "factory"}, Spec: otav1.DeviceEnrollmentSpec{
		TokenSecretRef: otav1.TokenSecretReference{Name: "tenant"},
		Mender:         &otav1.MenderEnrollment{DeviceType: "sensor-v1", PreauthorizedKeys: []string{good, bad}},
	}}
	if err := k8s.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(e)
	got := waitEnrollment(t, key, metav1.ConditionFalse, otav1.ReasonPreauthorizedKeyInvalid)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "preauthorizedKeys[1]") {
		t.Errorf("message %q does not name the bad entry", c.Message)
	}
	got.Spec.Mender.PreauthorizedKeys = []string{good}
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = waitEnrollment(t, key, metav1.ConditionTrue, otav1.ReasonEnrollmentActive)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "Mender devices register as type sensor-v1") {
		t.Errorf("message %q does not describe spec.mender", c.Message)
	}
}
