package otaclient

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// PageSize is how many devices one list request asks for.
const PageSize = 500

// Devices reads the aggregated device API.
type Devices struct {
	rc *rest.RESTClient
}

// NewDevices makes the client.
func NewDevices(cfg *rest.Config) (*Devices, error) {
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	rc, err := restClient(cfg, s, devv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &Devices{rc: rc}, nil
}

// Each lists the namespace's devices matching the field selector, PageSize
// at a time, and calls fn for every device. Only one page is held at a
// time. A list whose continue token expired fails: counting it again from
// the start would count some devices twice.
func (c *Devices) Each(ctx context.Context, namespace string, selector fields.Selector, fn func(*devv1.Device)) error {
	opts := metav1.ListOptions{Limit: PageSize}
	if selector != nil && !selector.Empty() {
		opts.FieldSelector = selector.String()
	}
	for page := 1; ; page++ {
		list := &devv1.DeviceList{}
		err := c.page(ctx, namespace, &opts, list)
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return fmt.Errorf("list devices in %s: the list expired after %d pages (the fleet changed too much meanwhile); run again: %w", namespace, page-1, err)
		}
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("list devices in %s: the device API (%s) is not served here; is the OTA server's device API installed? %w", namespace, devv1.SchemeGroupVersion, err)
		}
		if err != nil {
			return fmt.Errorf("list devices in %s (page %d): %w", namespace, page, err)
		}
		for i := range list.Items {
			fn(&list.Items[i])
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

func (c *Devices) page(ctx context.Context, namespace string, opts *metav1.ListOptions, into *devv1.DeviceList) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	return c.rc.Get().Namespace(namespace).Resource(devv1.ResourceDevices).
		VersionedParams(opts, metav1.ParameterCodec).Do(ctx).Into(into)
}

// Decision reads devices/NAME/decision: what the device would be told if
// it checked in now, and each rollout's verdict.
func (c *Devices) Decision(ctx context.Context, namespace, name string) (*devv1.DeviceDecision, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	d := &devv1.DeviceDecision{}
	err := c.rc.Get().Namespace(namespace).Resource(devv1.ResourceDevices).Name(name).
		SubResource(devv1.SubresourceDecision).Do(ctx).Into(d)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("device %s not found in namespace %s", name, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("get decision of device %s/%s: %w", namespace, name, err)
	}
	if d.Name == "" {
		d.Name, d.Namespace = name, namespace
	}
	return d, nil
}
