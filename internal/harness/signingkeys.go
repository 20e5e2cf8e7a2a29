package harness

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AssignmentKeySecret is the signing-key Secret the OTA servers watch
// (their default --signing-key-secret) with StackOptions.SigningKeySecret.
const AssignmentKeySecret = "otaflow-assignment-key"

// createSigningKeySecret creates AssignmentKeySecret holding the initial
// key as key.pem.
func (s *Stack) createSigningKeySecret(ctx context.Context) error {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Opts.Namespace, Name: AssignmentKeySecret},
		Data:       map[string][]byte{"key.pem": s.AssignmentKeyPEM},
	}
	if err := s.CP.Client.Create(ctx, sec); err != nil {
		return fmt.Errorf("create signing-key Secret: %w", err)
	}
	return nil
}

// SetSigningKeys replaces the data of the signing-key Secret, as an
// operator's edit of it does (docs/security.md, "Rotating the assignment
// signing key"): *.pem entries holding private keys, "current" and
// "serial". The OTA servers pick it up through their watch; wait for
// GET /v1/keys to show the new serial. It needs
// StackOptions.SigningKeySecret.
func (s *Stack) SetSigningKeys(ctx context.Context, data map[string][]byte) error {
	if !s.Opts.SigningKeySecret {
		return fmt.Errorf("SetSigningKeys: the stack runs with --signing-key-file (StackOptions.SigningKeySecret is off)")
	}
	key := client.ObjectKey{Namespace: s.Opts.Namespace, Name: AssignmentKeySecret}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sec := &corev1.Secret{}
		if err := s.CP.Client.Get(ctx, key, sec); err != nil {
			return err
		}
		sec.Data, sec.StringData = data, nil
		return s.CP.Client.Update(ctx, sec)
	})
	if err != nil {
		return fmt.Errorf("update signing-key Secret: %w", err)
	}
	return nil
}
