package releasetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
)

// ImageServer serves firmware images by path (the harness's download site).
// Its URLs name the host the suite gave it (Options.ImageHost), or
// 127.0.0.1.
type ImageServer struct {
	*harness.FileServer
	host string
}

// Put publishes content at path and returns its URL.
func (s *ImageServer) Put(path string, content []byte) string {
	return s.rename(s.FileServer.Put(path, content))
}

// At is the URL of a path, published or not.
func (s *ImageServer) At(path string) string { return s.rename(s.FileServer.At(path)) }

func (s *ImageServer) rename(u string) string {
	if s.host == "" {
		return u
	}
	return strings.Replace(u, "//127.0.0.1:", "//"+s.host+":", 1)
}

// VendorKey is a firmware vendor's signing key; the cluster only sees its
// public half, PEM.
type VendorKey struct {
	Signer crypto.Signer
	PEM    []byte
}

// NewECDSAKey makes an ECDSA P-256 vendor key.
func NewECDSAKey(t testing.TB) VendorKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return VendorKey{Signer: k, PEM: PublicPEM(t, &k.PublicKey)}
}

// NewEd25519Key makes an Ed25519 vendor key.
func NewEd25519Key(t testing.TB) VendorKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return VendorKey{Signer: priv, PEM: PublicPEM(t, pub)}
}

// PublicPEM encodes a public key as a PKIX "PUBLIC KEY" PEM block.
func PublicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Sign signs img as `cosign sign-blob --key` does: ECDSA over SHA-256 (DER),
// Ed25519 over the message itself.
func (k VendorKey) Sign(t testing.TB, img []byte) []byte {
	t.Helper()
	switch s := k.Signer.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(s, img)
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(img)
		sig, err := ecdsa.SignASN1(rand.Reader, s, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("unsupported key %T", k.Signer)
	return nil
}

// Eventually polls cond until it returns nil, and fails the test with
// cond's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NewNamespace creates a namespace named prefix plus a random suffix.
func NewNamespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// WaitReady waits until rel is Ready, keeping its latest state in rel.
func WaitReady(t testing.TB, c client.Client, rel *otav1.FirmwareRelease, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(rel), rel); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(rel.Status.Conditions, otav1.ConditionReady) {
			return fmt.Errorf("release not Ready: %+v", rel.Status.Conditions)
		}
		return nil
	})
}

// Release is a FirmwareRelease for sensor-v1 devices of img at url, signed
// with sig and trusting the key cosign.pub of Secret vendor-keys.
func Release(ns, name, version string, securityVersion int64, url string, img, sig []byte) *otav1.FirmwareRelease {
	sum := sha256.Sum256(img)
	return &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: otav1.FirmwareReleaseSpec{
			Version:         version,
			SecurityVersion: securityVersion,
			Compatibility:   otav1.Compatibility{DeviceTypes: []string{"sensor-v1"}},
			Source:          otav1.Source{URL: url, SHA256: hex.EncodeToString(sum[:])},
			Signature: otav1.Signature{
				Value:      base64.StdEncoding.EncodeToString(sig),
				PublicKeys: []otav1.PublicKeySource{{SecretRef: otav1.SecretKeyReference{Name: "vendor-keys", Key: "cosign.pub"}}},
			},
		},
	}
}
