package deviceapi

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// newScheme registers the device types under the served version and, the
// same Go types, as the internal version the generic API server converts
// through: there is one version, so conversion is the identity.
func newScheme() (*runtime.Scheme, serializer.CodecFactory, error) {
	s := runtime.NewScheme()
	if err := devicesv1.AddToScheme(s); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	internal := schema.GroupVersion{Group: devicesv1.GroupName, Version: runtime.APIVersionInternal}
	s.AddKnownTypes(internal, &devicesv1.Device{}, &devicesv1.DeviceList{}, &devicesv1.DeviceDecision{})
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	s.AddUnversionedTypes(schema.GroupVersion{Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	if err := s.AddFieldLabelConversionFunc(devicesv1.SchemeGroupVersion.WithKind("Device"), convertFieldLabel); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	return s, serializer.NewCodecFactory(s), nil
}

// fieldLabels are the field selectors devices support.
var fieldLabels = map[string]bool{
	"metadata.name": true, "metadata.namespace": true,
	devicesv1.FieldVersion: true, devicesv1.FieldRollout: true, devicesv1.FieldState: true, devicesv1.FieldType: true,
}

func convertFieldLabel(label, value string) (string, string, error) {
	if !fieldLabels[label] {
		return "", "", fmt.Errorf("field label %q is not supported for devices (supported: metadata.name, metadata.namespace, %s, %s, %s, %s)",
			label, devicesv1.FieldVersion, devicesv1.FieldState, devicesv1.FieldRollout, devicesv1.FieldType)
	}
	return label, value, nil
}
