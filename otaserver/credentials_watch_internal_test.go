package otaserver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// flakySecrets answers Secret reads with err when set, else with data (nil:
// not found).
type flakySecrets struct {
	client.Reader
	data map[string][]byte
	err  error
}

func (f *flakySecrets) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch {
	case f.err != nil:
		return f.err
	case f.data == nil:
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	obj.(*corev1.Secret).Data = f.data
	return nil
}

// TestTargetSecretsKeepLastOnError: a failed read of a target-tokens
// Secret keeps the tokens last read (an API server hiccup locks no device
// out); not found revokes them.
func TestTargetSecretsKeepLastOnError(t *testing.T) {
	es := []otav1.DeviceEnrollment{{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "f"},
		Spec: otav1.DeviceEnrollmentSpec{DDI: &otav1.DDIEnrollment{DeviceType: "t",
			TargetTokensSecretRef: &otav1.LocalSecretReference{Name: "f-ddi"}}}}}
	src := &flakySecrets{data: map[string][]byte{"dev-a": []byte("token-a")}}
	w := &credentialWatch{secrets: src, o: CredentialWatchOptions{Timeout: time.Second, Log: logr.Discard()}}
	read := func() string {
		got := w.targetSecrets(context.Background(), es)
		return string(got[0]["dev-a"])
	}
	if got := read(); got != "token-a" {
		t.Fatalf("first read: %q", got)
	}
	src.err = errors.New("connection refused")
	for range 2 { // and it stays kept across failed reads
		if got := read(); got != "token-a" {
			t.Fatalf("after a failed read: %q, want the last tokens kept", got)
		}
	}
	src.err, src.data = nil, nil
	if got := read(); got != "" {
		t.Fatalf("after the Secret was deleted: %q, want revoked", got)
	}
	src.err = errors.New("timeout")
	if got := read(); got != "" {
		t.Fatalf("a failed read after a deletion brought back %q", got)
	}
}
