package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Enrollment token rules shared by the manager (conditions) and the OTA
// server (which refuses what they refuse).
const (
	// MinEnrollmentTokenLength is the shortest bootstrap token accepted:
	// 32 bytes, e.g. `openssl rand -base64 32` gives 44.
	MinEnrollmentTokenLength = 32
	// MaxEnrollmentTokenLength bounds what is hashed per request.
	MaxEnrollmentTokenLength = 512
	// DefaultEnrollmentTokenKey is the Secret data key of the token.
	DefaultEnrollmentTokenKey = "token"
	// MaxAllowedDeviceIDs bounds spec.allowedDeviceIDs (object size); a
	// larger pre-provisioned fleet is split over several DeviceEnrollments.
	MaxAllowedDeviceIDs = 10000
)

// DeviceEnrollment condition reasons.
const (
	ReasonEnrollmentActive  = "Active"
	ReasonTokenSecretAbsent = "TokenSecretNotFound"
	ReasonTokenKeyAbsent    = "TokenKeyNotFound"
	ReasonTokenTooShort     = "TokenTooShort"
	ReasonTokenTooLong      = "TokenTooLong"
	ReasonEnrollmentExpired = "Expired"
	ReasonEnrollmentPaused  = "Suspended"
	ReasonTokenDuplicate    = "TokenNotUnique"
)

// TokenSecretReference names the Secret (in the object's namespace) and
// data key holding a bootstrap token.
type TokenSecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data; "token" when empty.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]*$`
	// +optional
	Key string `json:"key,omitempty"`
}

// DeviceEnrollmentSpec is a bootstrap credential of one tenant: devices that
// enroll with its token belong to this namespace, and only Rollouts of this
// namespace select them.
type DeviceEnrollmentSpec struct {
	// TokenSecretRef names the Secret (same namespace) holding the
	// bootstrap token, at least 32 bytes. Changing the Secret's value
	// rotates the token: devices already enrolled keep working.
	TokenSecretRef TokenSecretReference `json:"tokenSecretRef"`

	// ExpiresAt: from this time on the token enrolls nothing. Devices
	// enrolled earlier keep working.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// MaxDevices caps how many devices enroll through this object
	// (re-enrollments of its devices do not count). Unset: no cap. A
	// leaked token then enrolls at most this many devices.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxDevices *int64 `json:"maxDevices,omitempty"`

	// AllowedDeviceIDs, when set, is the only device IDs this token
	// enrolls (pre-provisioned fleets, e.g. serial numbers imported from
	// manufacturing). At most 10000; split larger fleets over several
	// DeviceEnrollments.
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +listType=set
	// +optional
	AllowedDeviceIDs []string `json:"allowedDeviceIDs,omitempty"`

	// Suspend stops enrollments through this object without deleting it.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// DeviceEnrollmentStatus is observed state.
type DeviceEnrollmentStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// EnrolledDevices counts the devices enrolled through this object (its
	// maxDevices quota's count), written by the OTA server.
	// +optional
	EnrolledDevices int64 `json:"enrolledDevices,omitempty"`
	// Conditions: Ready is True while the token enrolls devices.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DeviceEnrollment is a tenant's bootstrap credential for devices.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=denr,categories=ota
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.tokenSecretRef.name`
// +kubebuilder:printcolumn:name="Enrolled",type=integer,JSONPath=`.status.enrolledDevices`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxDevices`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.spec.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeviceEnrollment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DeviceEnrollmentSpec   `json:"spec,omitempty"`
	Status DeviceEnrollmentStatus `json:"status,omitempty"`
}

// TokenKey is the Secret data key holding the token.
func (e *DeviceEnrollment) TokenKey() string {
	if e.Spec.TokenSecretRef.Key == "" {
		return DefaultEnrollmentTokenKey
	}
	return e.Spec.TokenSecretRef.Key
}

// +kubebuilder:object:root=true

// DeviceEnrollmentList is a list of DeviceEnrollments.
type DeviceEnrollmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeviceEnrollment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DeviceEnrollment{}, &DeviceEnrollmentList{})
}
