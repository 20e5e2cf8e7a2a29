package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/testenv"
)

// ManagerEgressAllow is the manager's egress allowlist in a local stack:
// the download site, and any S3 server or registry a test adds, listen on
// loopback, which the manager refuses to fetch from by default.
const ManagerEgressAllow = "--egress-allow=127.0.0.0/8,::1"

// Image returns size bytes of deterministic firmware content for a version.
func Image(version string, size int) []byte {
	seed := sha256.Sum256([]byte(version))
	r := rand.NewChaCha8(seed)
	b := make([]byte, size)
	_, _ = r.Read(b)
	return b
}

// loadSample decodes one object from config/samples.
func loadSample(file string, into any) error {
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "samples", file))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		return fmt.Errorf("decode sample %s: %w", file, err)
	}
	return nil
}

// SampleRelease is config/samples' FirmwareRelease.
func SampleRelease() (*otav1.FirmwareRelease, error) {
	rel := &otav1.FirmwareRelease{}
	return rel, loadSample("ota_v1alpha1_firmwarerelease.yaml", rel)
}

// SampleRollout is config/samples' Rollout.
func SampleRollout() (*otav1.Rollout, error) {
	ro := &otav1.Rollout{}
	return ro, loadSample("ota_v1alpha1_rollout.yaml", ro)
}

// CreateNamespace creates a namespace with the vendor's public key Secret
// (the sample's vendor-keys/cosign.pub).
func (s *Stack) CreateNamespace(ctx context.Context, name string) error {
	if err := s.CP.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "vendor-keys"},
		Data:       map[string][]byte{"cosign.pub": s.Vendor.PublicPEM},
	}
	if err := s.CP.Client.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create vendor key Secret: %w", err)
	}
	return nil
}

// PublishRelease is the vendor's and platform team's work for one version:
// build the image, sign it, put it on the download site, and apply the
// sample FirmwareRelease pointing at it.
func (s *Stack) PublishRelease(ctx context.Context, ns, name, version string, securityVersion int64, size int) (*otav1.FirmwareRelease, error) {
	return s.PublishImage(ctx, ns, name, version, securityVersion, Image(version, size), nil)
}

// PublishImage is PublishRelease of a given image (an SWUpdate .swu, say),
// with the FirmwareRelease changed by mutate before it is applied.
func (s *Stack) PublishImage(ctx context.Context, ns, name, version string, securityVersion int64, img []byte, mutate func(*otav1.FirmwareRelease)) (*otav1.FirmwareRelease, error) {
	sig, err := s.Vendor.Sign(img)
	if err != nil {
		return nil, err
	}
	rel, err := SampleRelease()
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(img)
	rel.Namespace, rel.Name = ns, name
	rel.Spec.Version = version
	rel.Spec.SecurityVersion = securityVersion
	// Per namespace: parallel tests may publish the same release name.
	rel.Spec.Source.URL = s.Images.Put("/firmware/"+ns+"/"+name+".bin", img)
	rel.Spec.Source.SHA256 = hex.EncodeToString(d[:])
	rel.Spec.Source.Size = ptr.To(int64(len(img)))
	rel.Spec.Signature.Value = sig
	if mutate != nil {
		mutate(rel)
	}
	if err := s.CP.Client.Create(ctx, rel); err != nil {
		return nil, fmt.Errorf("create release %s: %w", name, err)
	}
	return rel, nil
}

// CreateRollout applies the sample Rollout, renamed, for release, changed
// by mutate.
func (s *Stack) CreateRollout(ctx context.Context, ns, name, release string, mutate func(*otav1.Rollout)) (*otav1.Rollout, error) {
	ro, err := SampleRollout()
	if err != nil {
		return nil, err
	}
	ro.Namespace, ro.Name = ns, name
	ro.Spec.ReleaseRef.Name = release
	if mutate != nil {
		mutate(ro)
	}
	if err := s.CP.Client.Create(ctx, ro); err != nil {
		return nil, fmt.Errorf("create rollout %s: %w", name, err)
	}
	return ro, nil
}

// StartRingRollout creates a paused rollout of release to the devices
// labelled ring=<ring>, in one wave of all of them without an offer limit
// (then changed by mutate), waits until its fleet counts n devices and
// resumes it, so that every device has enrolled before a wave opens.
func (s *Stack) StartRingRollout(ctx context.Context, ns, name, release, ring string, n int64, mutate func(*otav1.Rollout)) (client.ObjectKey, error) {
	ro, err := s.CreateRollout(ctx, ns, name, release, func(r *otav1.Rollout) {
		r.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"ring": ring}}
		r.Spec.Waves = []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}
		r.Spec.Paused = true
		r.Spec.MaxOffersPerMinute = nil
		if mutate != nil {
			mutate(r)
		}
	})
	if err != nil {
		return client.ObjectKey{}, err
	}
	key := client.ObjectKeyFromObject(ro)
	if _, err := WaitFleet(ctx, s.CP.Client, key, n, 0); err != nil {
		return key, fmt.Errorf("%s: fleet never reached %d devices: %w", name, n, err)
	}
	return key, PatchRollout(ctx, s.CP.Client, key, func(r *otav1.Rollout) { r.Spec.Paused = false })
}
