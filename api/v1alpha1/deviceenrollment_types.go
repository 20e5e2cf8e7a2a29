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
	// ReasonTargetTokensSecretAbsent: spec.ddi.targetTokensSecretRef names
	// a Secret that does not exist (no DDI device authenticates by its
	// target token).
	ReasonTargetTokensSecretAbsent = "TargetTokensSecretNotFound"
	// ReasonTargetTokensInvalid: some entries of the target-tokens Secret
	// are unusable (a key that is no device ID, a token breaking the rules,
	// a token used twice); the other entries work.
	ReasonTargetTokensInvalid = "TargetTokensInvalid"
	// ReasonPreauthorizedKeyInvalid: an entry of spec.mender.preauthorizedKeys
	// is not a usable public key (those devices are not accepted; the
	// others are).
	ReasonPreauthorizedKeyInvalid = "PreauthorizedKeyInvalid"
)

// DDI target tokens travel in an HTTP header (`Authorization: TargetToken
// <t>`), so beyond the length rules of enrollment tokens they may only hold
// visible ASCII: a token with a space or a trailing newline (`kubectl create
// secret --from-file` of a file ending in one) could never be presented.

// HeaderSafeToken reports whether tok is all visible ASCII (0x21–0x7e).
func HeaderSafeToken(tok []byte) bool {
	for _, c := range tok {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

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

	// DDI admits hawkBit DDI clients (SWUpdate's suricatta,
	// rauc-hawkbit-updater) into this namespace, the DDI tenant. Absent:
	// no DDI device authenticates through this object. The limits above
	// (expiresAt, maxDevices, allowedDeviceIDs, suspend) apply to DDI
	// registrations too.
	// +optional
	DDI *DDIEnrollment `json:"ddi,omitempty"`

	// Mender admits mender-client devices (the Mender device API) into
	// this namespace. The enrollment token is the Mender tenant token
	// (TenantToken in mender.conf). Absent: no Mender device
	// authenticates through this object. The limits above apply to Mender
	// devices too; their device IDs are "mender-" and the first 40 hex
	// digits of the SHA-256 of the device's public key (DER).
	// +optional
	Mender *MenderEnrollment `json:"mender,omitempty"`
}

// MaxPreauthorizedKeys bounds spec.mender.preauthorizedKeys.
const MaxPreauthorizedKeys = 1000

// MenderEnrollment says which mender-client devices are accepted and what
// they are registered as. At least one way in: autoAccept, or
// preauthorized keys.
// +kubebuilder:validation:XValidation:rule="(has(self.autoAccept) && self.autoAccept) || (has(self.preauthorizedKeys) && size(self.preauthorizedKeys) > 0)",message="mender needs autoAccept: true or preauthorizedKeys (otherwise no Mender device is ever accepted)"
type MenderEnrollment struct {
	// DeviceType Mender devices registered through this object get;
	// FirmwareReleases match it against compatibility.deviceTypes (the
	// device_type a client reports must also be one the release's Mender
	// artifact is compatible with).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`
	DeviceType string `json:"deviceType"`

	// AutoAccept: any device presenting the tenant token is accepted (as
	// Mender's preauthorization by tenant token). Otherwise only the keys
	// in preauthorizedKeys are; others are answered 401, as pending
	// devices are by Mender.
	// +kubebuilder:default=false
	// +optional
	AutoAccept bool `json:"autoAccept,omitempty"`

	// PreauthorizedKeys are devices' public keys (PEM "PUBLIC KEY": RSA
	// of at least 2048 bits, ECDSA P-256 or Ed25519) accepted through
	// this object, with this object's tenant token or with none.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=4096
	// +kubebuilder:validation:items:XValidation:rule="self.trim().startsWith('-----BEGIN PUBLIC KEY-----') && self.trim().endsWith('-----END PUBLIC KEY-----')",message="each preauthorized key must be one PEM \"PUBLIC KEY\" block (openssl pkey -pubout)"
	// +listType=set
	// +optional
	PreauthorizedKeys []string `json:"preauthorizedKeys,omitempty"`

	// Labels given to Mender devices when they register. At most 32; keys
	// and values follow the Kubernetes label syntax. Inventory attributes
	// add labels "mender.io/<attribute>"; these win over them.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, self.all(k, size(k) >= 1 && size(k) <= 317 && [lists.range(317).slice(0, [317, size(k)].min()).filter(i, k.charAt(i) == '/')].all(slashes, size(slashes) <= 1 && [size(slashes) == 0 ? -1 : slashes[0]].all(p, size(k) - p - 1 >= 1 && size(k) - p - 1 <= 63 && alnum.indexOf(k.charAt(p + 1)) >= 0 && alnum.indexOf(k.charAt(size(k) - 1)) >= 0 && (p == -1 || (p <= 253 && lower.indexOf(k.charAt(0)) >= 0 && lower.indexOf(k.charAt(p - 1)) >= 0)) && lists.range(317).slice(0, [317, size(k)].min()).all(i, i == p || (i > p ? name.indexOf(k.charAt(i)) >= 0 : (k.charAt(i) == '.' ? i >= 1 && lower.indexOf(k.charAt(i - 1)) >= 0 && lower.indexOf(k.charAt(i + 1)) >= 0 : (lower + '-').indexOf(k.charAt(i)) >= 0)))))))))",message="labels keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside"
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, self.all(k, [self[k]].all(v, size(v) <= 63 && (size(v) == 0 || (alnum.indexOf(v.charAt(0)) >= 0 && alnum.indexOf(v.charAt(size(v) - 1)) >= 0 && lists.range(63).slice(0, [63, size(v)].min()).all(i, name.indexOf(v.charAt(i)) >= 0))))))))",message="labels values must be label values: at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside, or empty"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// DDIEnrollment says how hawkBit DDI devices authenticate and what they
// are registered as. At least one way in: per-device target tokens, or
// the enrollment token as a gateway token.
// +kubebuilder:validation:XValidation:rule="has(self.targetTokensSecretRef) || (has(self.gatewayToken) && self.gatewayToken)",message="ddi needs targetTokensSecretRef or gatewayToken: true (otherwise no DDI device can authenticate)"
type DDIEnrollment struct {
	// DeviceType DDI devices registered through this object get (DDI
	// does not report a hardware type); FirmwareReleases match it
	// against compatibility.deviceTypes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`
	DeviceType string `json:"deviceType"`

	// TargetTokensSecretRef names a Secret (same namespace) whose keys
	// are controllerIds (device IDs) and values their own tokens
	// (`Authorization: TargetToken <token>`), 32 to 512 bytes of visible
	// ASCII. Deleting a key revokes that device within a minute. Device
	// IDs with ':' cannot be Secret keys.
	// +optional
	TargetTokensSecretRef *LocalSecretReference `json:"targetTokensSecretRef,omitempty"`

	// GatewayToken: the enrollment token (tokenSecretRef) is also
	// accepted as `Authorization: GatewayToken <token>` for any
	// controllerId of the namespace that has no target token. Any holder
	// of it can act as every such device.
	// +kubebuilder:default=false
	// +optional
	GatewayToken bool `json:"gatewayToken,omitempty"`

	// Labels given to DDI devices when they register (Rollout selectors
	// select on them). At most 32; keys and values follow the Kubernetes
	// label syntax.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, self.all(k, size(k) >= 1 && size(k) <= 317 && [lists.range(317).slice(0, [317, size(k)].min()).filter(i, k.charAt(i) == '/')].all(slashes, size(slashes) <= 1 && [size(slashes) == 0 ? -1 : slashes[0]].all(p, size(k) - p - 1 >= 1 && size(k) - p - 1 <= 63 && alnum.indexOf(k.charAt(p + 1)) >= 0 && alnum.indexOf(k.charAt(size(k) - 1)) >= 0 && (p == -1 || (p <= 253 && lower.indexOf(k.charAt(0)) >= 0 && lower.indexOf(k.charAt(p - 1)) >= 0)) && lists.range(317).slice(0, [317, size(k)].min()).all(i, i == p || (i > p ? name.indexOf(k.charAt(i)) >= 0 : (k.charAt(i) == '.' ? i >= 1 && lower.indexOf(k.charAt(i - 1)) >= 0 && lower.indexOf(k.charAt(i + 1)) >= 0 : (lower + '-').indexOf(k.charAt(i)) >= 0)))))))))",message="labels keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside"
	// +kubebuilder:validation:XValidation:rule="['abcdefghijklmnopqrstuvwxyz0123456789'].all(lower, [lower + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'].all(alnum, [alnum + '-_.'].all(name, self.all(k, [self[k]].all(v, size(v) <= 63 && (size(v) == 0 || (alnum.indexOf(v.charAt(0)) >= 0 && alnum.indexOf(v.charAt(size(v) - 1)) >= 0 && lists.range(63).slice(0, [63, size(v)].min()).all(i, name.indexOf(v.charAt(i)) >= 0))))))))",message="labels values must be label values: at most 63 characters [A-Za-z0-9] with '-', '_' or '.' inside, or empty"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
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
// +kubebuilder:printcolumn:name="DDI",type=string,JSONPath=`.spec.ddi.deviceType`,priority=1
// +kubebuilder:printcolumn:name="Mender",type=string,JSONPath=`.spec.mender.deviceType`,priority=1
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
