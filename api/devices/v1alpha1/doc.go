// Package v1alpha1 is the device API, group devices.ota.otaflow.io: the
// OTA server's device store seen as Kubernetes objects. It is served by the
// OTA server through the API aggregation layer (an APIService), not stored
// in etcd, so these types have no CRD.
//
// +k8s:openapi-gen=true
// +kubebuilder:object:generate=true
// +kubebuilder:skip
// +groupName=devices.ota.otaflow.io
package v1alpha1
