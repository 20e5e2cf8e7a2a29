// Package otaclient talks to the Kubernetes API for `kubectl ota`: REST
// clients for Rollouts and FirmwareReleases (ota.otaflow.io) and for the
// aggregated device API (devices.ota.otaflow.io), built from the rest.Config
// that kubectl's flags give.
package otaclient

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// RequestTimeout bounds each single request (a watch is bounded by its
// caller's context instead).
const RequestTimeout = 30 * time.Second

// UserAgent identifies the plugin to the API server.
const UserAgent = "kubectl-ota"

// Scheme has the types the plugin reads and prints.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := otav1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register %s: %w", otav1.GroupVersion, err)
	}
	if err := devv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register %s: %w", devv1.SchemeGroupVersion, err)
	}
	return s, nil
}

func restClient(cfg *rest.Config, scheme *runtime.Scheme, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = UserAgent
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", gv, err)
	}
	return rc, nil
}

// Rollouts reads and patches Rollouts and reads FirmwareReleases.
type Rollouts struct {
	rc *rest.RESTClient
}

// NewRollouts makes the client.
func NewRollouts(cfg *rest.Config) (*Rollouts, error) {
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	rc, err := restClient(cfg, s, otav1.GroupVersion)
	if err != nil {
		return nil, err
	}
	return &Rollouts{rc: rc}, nil
}

// Get reads one Rollout.
func (c *Rollouts) Get(ctx context.Context, namespace, name string) (*otav1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	ro := &otav1.Rollout{}
	err := c.rc.Get().Namespace(namespace).Resource("rollouts").Name(name).Do(ctx).Into(ro)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("rollout %s not found in namespace %s", name, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("get rollout %s/%s: %w", namespace, name, err)
	}
	return ro, nil
}

// Release reads one FirmwareRelease.
func (c *Rollouts) Release(ctx context.Context, namespace, name string) (*otav1.FirmwareRelease, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	rel := &otav1.FirmwareRelease{}
	if err := c.rc.Get().Namespace(namespace).Resource("firmwarereleases").Name(name).Do(ctx).Into(rel); err != nil {
		return nil, fmt.Errorf("get firmwarerelease %s/%s: %w", namespace, name, err)
	}
	return rel, nil
}

// MergePatch sends a JSON merge patch of a Rollout as fieldManager and
// returns the patched object.
func (c *Rollouts) MergePatch(ctx context.Context, namespace, name string, patch []byte, fieldManager string) (*otav1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	ro := &otav1.Rollout{}
	err := c.rc.Patch(types.MergePatchType).Namespace(namespace).Resource("rollouts").Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: fieldManager}, metav1.ParameterCodec).
		Body(patch).Do(ctx).Into(ro)
	if err != nil {
		return nil, fmt.Errorf("patch rollout %s/%s: %w", namespace, name, err)
	}
	return ro, nil
}

// ListerWatcher lists and watches the one Rollout called name, for a
// watch that re-lists when its resource version expires.
func (c *Rollouts) ListerWatcher(namespace, name string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(c.rc, "rollouts", namespace, fields.OneTermEqualSelector("metadata.name", name))
}
