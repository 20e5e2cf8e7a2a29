package controllers_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/fetch/fetchtest"
	"github.com/otaflow/otaflow/internal/s3test"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

// TestSourceForbidden: releases pointing at addresses the manager's egress
// policy refuses stall with SourceForbidden, naming the host and the rule,
// without a request reaching them.
func TestSourceForbidden(t *testing.T) {
	vendor := releasetest.NewECDSAKey(t)
	img := randomImage(t, 1000)
	// The image is really there, on 127.0.0.1: only the policy keeps the
	// manager from it.
	loopURL := images.FileServer.Put("/forbidden/fw.bin", img)
	var redirects atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects.Add(1)
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	_, port, _ := strings.Cut(strings.TrimPrefix(loopURL, "http://127.0.0.1"), ":")
	port, _, _ = strings.Cut(port, "/")

	for _, tc := range []struct {
		name, url string
		want      []string // in the message
	}{
		{"metadata", "http://169.254.169.254/latest/meta-data/fw.bin", []string{"169.254.169.254", "cloud metadata service"}},
		{"loopback", loopURL, []string{"127.0.0.1", "loopback"}},
		{"service name", "http://minio.storage.svc:9000/fw.bin", []string{"minio.storage.svc", "cluster-internal"}},
		{"service fqdn", "https://fw.storage.svc.cluster.local/fw.bin", []string{"fw.storage.svc.cluster.local", "cluster-internal"}},
		{"name resolving to loopback", "http://evil.example.test:" + port + "/forbidden/fw.bin", []string{"evil.example.test", "resolved to 127.0.0.1", "loopback"}},
		{"redirect to loopback", allowed(redirector.URL, "mirror") + "/?to=" + url.QueryEscape(loopURL), []string{"redirect to " + loopURL, "loopback"}},
		{"oci registry on loopback", "oci://127.0.0.1:" + port + "/fw:1.0", []string{"127.0.0.1", "loopback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
			rel := release(ns, "sensor", tc.url, img, vendor.Sign(t, img))
			if strings.HasPrefix(tc.url, "oci://") {
				rel.Spec.Source.OCI = &otav1.OCISource{Insecure: true}
			}
			create(t, rel)
			got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionStalled, metav1.ConditionTrue, otav1.ReasonSourceForbidden)
			ready := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != otav1.ReasonSourceForbidden {
				t.Fatalf("Ready %+v, want False/%s", ready, otav1.ReasonSourceForbidden)
			}
			for _, w := range append(tc.want, "--egress-allow") {
				if !strings.Contains(ready.Message, w) {
					t.Errorf("message %q does not mention %q", ready.Message, w)
				}
			}
			if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReconciling); c != nil {
				t.Errorf("Reconciling %+v: a refusal is permanent, not retried", c)
			}
			if got.Status.Artifact != nil {
				t.Errorf("artifact %+v for a refused source", got.Status.Artifact)
			}
			waitEvent(t, rel, corev1.EventTypeWarning, otav1.ReasonSourceForbidden)
		})
	}
	if redirects.Load() == 0 {
		t.Error("the allowed redirecting server was never asked; the redirect case did not test a redirect")
	}
}

// secretValuesAbsent checks that no condition of rel and no event about it
// shows any of values.
func secretValuesAbsent(t *testing.T, rel *otav1.FirmwareRelease, values ...string) {
	t.Helper()
	ctx := context.Background()
	got := &otav1.FirmwareRelease{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(rel), got); err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, c := range got.Status.Conditions {
		texts = append(texts, c.Message)
	}
	var list eventsv1.EventList
	if err := k8s.List(ctx, &list, client.InNamespace(rel.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		texts = append(texts, e.Note)
	}
	status := fmt.Sprintf("%+v", got.Status)
	for _, v := range values {
		for _, s := range append(texts, status) {
			if strings.Contains(s, v) {
				t.Errorf("a secret value shows in status or events: %q", s)
			}
		}
	}
}

// readyFalse waits for Ready False with reason and a message containing msg.
func readyFalse(reason, msg string) func(*otav1.FirmwareRelease) error {
	return func(rel *otav1.FirmwareRelease) error {
		c := meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("Ready %+v, want False/%s saying %q", c, reason, msg)
		}
		return nil
	}
}

func setSecret(t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
		s.Data = data
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		return
	}
	s.Data = data
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// TestS3SourceWithSecret: an s3:// release against a real S3 server
// (versitygw) waits for its credentials Secret, reports refused
// credentials, and turns Ready once the Secret is right; no key shows in
// status or events.
func TestS3SourceWithSecret(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	img := randomImage(t, 120_000)
	if _, err := srv.Client().PutObject(context.Background(), bucket, "sensor/2.1.0.bin", bytes.NewReader(img), int64(len(img)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	rel := release(ns, "sensor", "s3://"+bucket+"/sensor/2.1.0.bin", img, vendor.Sign(t, img))
	rel.Spec.Source.S3 = &otav1.S3Source{Endpoint: allowed(srv.Endpoint, "s3"), Region: srv.Region, Insecure: srv.Insecure}
	rel.Spec.Source.SecretRef = &otav1.LocalSecretReference{Name: "s3-creds"}
	create(t, rel)
	key := client.ObjectKeyFromObject(rel)

	// Applied before its Secret: waited for, not stalled.
	got := waitCondition(t, key, otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonSourceCredentialsUnavailable)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "source credentials Secret s3-creds not found") {
		t.Errorf("Ready message %q should say the Secret is missing", c.Message)
	}

	setSecret(t, ns, "s3-creds", map[string][]byte{"accessKeyID": []byte(srv.AccessKey)})
	waitRelease(t, key, readyFalse(otav1.ReasonSourceCredentialsUnavailable, `source credentials Secret s3-creds: has no key "secretAccessKey"`))

	const wrong = "wrong-secret-access-key"
	setSecret(t, ns, "s3-creds", map[string][]byte{"accessKeyID": []byte(srv.AccessKey), "secretAccessKey": []byte(wrong)})
	got = waitCondition(t, key, otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonSourceAuthFailed)
	waitEvent(t, rel, corev1.EventTypeWarning, otav1.ReasonSourceAuthFailed)
	secretValuesAbsent(t, rel, wrong)

	setSecret(t, ns, "s3-creds", map[string][]byte{"accessKeyID": []byte(srv.AccessKey), "secretAccessKey": []byte(srv.SecretKey)})
	got = waitCondition(t, key, otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("artifact does not decrypt to the object")
	}
	if got.Status.Artifact.ManifestDigest != "" {
		t.Errorf("manifestDigest %q for an s3 source", got.Status.Artifact.ManifestDigest)
	}
	secretValuesAbsent(t, rel, wrong, srv.SecretKey)

	// A Ready release does not need its source any more: deleting the
	// Secret changes nothing.
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3-creds"}}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, key, otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
}

// TestOCISourceWithSecret: an oci:// release against a registry behind
// basic auth: credentials of the wrong kind stall it until the Secret is
// fixed, a wrong password is reported, and the right one makes it Ready
// with the manifest the tag resolved to recorded.
func TestOCISourceWithSecret(t *testing.T) {
	const password = "registry-password-1"
	reg := fetchtest.StartRegistry(t, "robot", password)
	img := randomImage(t, 80_000)
	m := reg.Push(t, "firmware/sensor", "2.1.0", fetchtest.FirmwareLayer(img))
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	setSecret(t, ns, "registry", map[string][]byte{"accessKeyID": []byte("AKIAEXAMPLE"), "secretAccessKey": []byte("not-for-oci")})
	rel := release(ns, "sensor", "oci://"+allowed(reg.Addr, "registry")+"/firmware/sensor:2.1.0", img, vendor.Sign(t, img))
	rel.Spec.Source.OCI = &otav1.OCISource{Insecure: true}
	rel.Spec.Source.SecretRef = &otav1.LocalSecretReference{Name: "registry"}
	create(t, rel)
	key := client.ObjectKeyFromObject(rel)

	got := waitCondition(t, key, otav1.ConditionStalled, metav1.ConditionTrue, otav1.ReasonSourceCredentialsInvalid)
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "not S3 keys") {
		t.Errorf("Ready message %q should say S3 keys do not fit an oci source", c.Message)
	}

	// Stalled, but the Secret watch brings it back.
	setSecret(t, ns, "registry", map[string][]byte{"username": []byte("robot"), "password": []byte("wrong-password-2")})
	waitCondition(t, key, otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonSourceAuthFailed)

	setSecret(t, ns, "registry", map[string][]byte{"username": []byte("robot"), "password": []byte(password)})
	got = waitCondition(t, key, otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
	if !bytes.Equal(decryptArtifact(t, got), img) {
		t.Fatal("artifact does not decrypt to the layer")
	}
	if got.Status.Artifact.ManifestDigest != m.Digest.String() {
		t.Errorf("status.artifact.manifestDigest %q, want %s (what 2.1.0 resolved to)", got.Status.Artifact.ManifestDigest, m.Digest)
	}
	secretValuesAbsent(t, rel, password, "wrong-password-2", "not-for-oci")
}

// TestOCIArtifactAmbiguous: an artifact with two files and no marked image
// stalls with OCIArtifactInvalid, listing them; nothing is downloaded.
func TestOCIArtifactAmbiguous(t *testing.T) {
	reg := fetchtest.StartRegistry(t, "robot", "pw-registry")
	img := randomImage(t, 10_000)
	reg.Push(t, "fw", "1.0",
		fetchtest.Layer{MediaType: "text/plain", Title: "NOTES.txt", Data: []byte("notes")},
		fetchtest.FirmwareLayer(img))
	ns := newNamespace(t)
	vendor := releasetest.NewECDSAKey(t)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": vendor.PEM})
	setSecret(t, ns, "registry", map[string][]byte{"username": []byte("robot"), "password": []byte("pw-registry")})
	rel := release(ns, "sensor", "oci://"+allowed(reg.Addr, "registry")+"/fw:1.0", img, vendor.Sign(t, img))
	rel.Spec.Source.OCI = &otav1.OCISource{Insecure: true}
	rel.Spec.Source.SecretRef = &otav1.LocalSecretReference{Name: "registry"}
	create(t, rel)
	got := waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionStalled, metav1.ConditionTrue, otav1.ReasonOCIArtifactInvalid)
	c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady)
	for _, w := range []string{"2 layers", "NOTES.txt", "fw.bin", fetch.ImageLayerMediaType} {
		if !strings.Contains(c.Message, w) {
			t.Errorf("message %q does not mention %q", c.Message, w)
		}
	}
	if n := reg.BlobGets(); n != 0 {
		t.Errorf("%d blob downloads for an ambiguous artifact", n)
	}
}
