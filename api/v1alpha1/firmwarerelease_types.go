package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The securityVersion rule sits on the spec, not the field: the field is
// optional, and a field rule does not run when it goes from unset to set.
// Unset counts as 0, as it does for the controller and the OTA server.

// FirmwareReleaseSpec describes one signed firmware image and the devices it
// fits. Version, securityVersion, compatibility and source.sha256 are the
// release's identity, which running rollouts and device floors rely on: they
// cannot change (a new release is a new object). Nor can format and
// artifactFilename, which decide what clients receive the image and under
// which name.
// +kubebuilder:validation:XValidation:rule="(has(self.securityVersion) ? self.securityVersion : 0) == (has(oldSelf.securityVersion) ? oldSelf.securityVersion : 0)",message="securityVersion is immutable; create a new FirmwareRelease",fieldPath=.securityVersion
// +kubebuilder:validation:XValidation:rule="has(self.artifactFilename) == has(oldSelf.artifactFilename) && (!has(self.artifactFilename) || self.artifactFilename == oldSelf.artifactFilename)",message="artifactFilename is immutable; create a new FirmwareRelease",fieldPath=.artifactFilename
// +kubebuilder:validation:XValidation:rule="!has(self.artifactFilename) || !has(self.format) || self.format != 'SWUpdate' || self.artifactFilename.endsWith('.swu')",message="artifactFilename of a SWUpdate release must end in .swu",fieldPath=.artifactFilename
// +kubebuilder:validation:XValidation:rule="!has(self.artifactFilename) || !has(self.format) || self.format != 'RAUC' || self.artifactFilename.endsWith('.raucb')",message="artifactFilename of a RAUC release must end in .raucb",fieldPath=.artifactFilename
// +kubebuilder:validation:XValidation:rule="!has(self.artifactFilename) || !has(self.format) || self.format != 'Mender' || self.artifactFilename.endsWith('.mender')",message="artifactFilename of a Mender release must end in .mender",fieldPath=.artifactFilename
type FirmwareReleaseSpec struct {
	// Version is the firmware's semantic version, reported by devices once
	// they run it.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="version is immutable; create a new FirmwareRelease"
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\\\\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?(\\\\+[0-9a-zA-Z-]+(\\\\.[0-9a-zA-Z-]+)*)?$')",message="version must be a semantic version such as 2.1.0 or 2.1.0-rc.1"
	Version string `json:"version"`

	// SecurityVersion is a monotonic anti-rollback counter. Devices never
	// install a release whose securityVersion is below their floor.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	SecurityVersion int64 `json:"securityVersion,omitempty"`

	// Compatibility says which devices may take the release.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="compatibility is immutable; create a new FirmwareRelease"
	Compatibility Compatibility `json:"compatibility"`

	// Source is where the plaintext image is fetched from.
	Source Source `json:"source"`

	// Signature is the vendor's signature over the plaintext image.
	Signature Signature `json:"signature"`

	// Format of the image, which decides the clients that may receive it:
	// Raw, an image only otaflow agents install; SWUpdate, an SWUpdate .swu
	// image, and RAUC, a RAUC .raucb bundle, both for hawkBit DDI clients
	// (SWUpdate suricatta, rauc-hawkbit-updater) as well as otaflow agents;
	// Mender, a Mender artifact (.mender) for mender-client devices, whose
	// header must name every device type of compatibility.deviceTypes.
	// +kubebuilder:validation:Enum=Raw;SWUpdate;RAUC;Mender
	// +kubebuilder:default=Raw
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="format is immutable; create a new FirmwareRelease"
	// +optional
	Format ReleaseFormat `json:"format,omitempty"`

	// ArtifactFilename is the file name DDI clients see for the image.
	// Default: the base name of the source (URL path or S3 key; for OCI,
	// the repository's last component and the version), with the format's
	// extension appended when it lacks it (.swu for SWUpdate, .raucb for
	// RAUC), as status.artifact.filename shows.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')",message="artifactFilename must be 1 to 128 characters A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
	// +optional
	ArtifactFilename string `json:"artifactFilename,omitempty"`
}

// ReleaseFormat says what kind of update file a release's image is.
type ReleaseFormat string

// Release formats.
const (
	// FormatRaw: an image only otaflow agents install.
	FormatRaw ReleaseFormat = "Raw"
	// FormatSWUpdate: an SWUpdate image (.swu), also for hawkBit DDI clients.
	FormatSWUpdate ReleaseFormat = "SWUpdate"
	// FormatRAUC: a RAUC bundle (.raucb), also for hawkBit DDI clients.
	FormatRAUC ReleaseFormat = "RAUC"
	// FormatMender: a Mender artifact (.mender) for mender-client devices
	// (and otaflow agents).
	FormatMender ReleaseFormat = "Mender"
)

// Extension is the file name extension the format's clients expect:
// ".swu", ".raucb", or ".bin" for Raw (which clients do not require).
func (f ReleaseFormat) Extension() string {
	switch f {
	case FormatSWUpdate:
		return ".swu"
	case FormatRAUC:
		return ".raucb"
	case FormatMender:
		return ".mender"
	default:
		return ".bin"
	}
}

// DDI reports whether hawkBit DDI clients may receive the format.
func (f ReleaseFormat) DDI() bool { return f == FormatSWUpdate || f == FormatRAUC }

// Compatibility restricts a release to device types.
type Compatibility struct {
	// DeviceTypes the image is built for, as devices report them at
	// enrollment.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`
	DeviceTypes []string `json:"deviceTypes"`
}

// Source locates the plaintext image and pins its content. Where the image
// comes from (url, secretRef, s3, oci, size) may change; what it is
// (sha256) may not.
// +kubebuilder:validation:XValidation:rule="!has(self.s3) || self.url.startsWith('s3://')",message="s3 is only for s3:// URLs",fieldPath=.s3
// +kubebuilder:validation:XValidation:rule="!has(self.oci) || self.url.startsWith('oci://')",message="oci is only for oci:// URLs",fieldPath=.oci
// +kubebuilder:validation:XValidation:rule="!has(self.secretRef) || !self.url.matches('^[a-z0-9]+://[^/?#]*@')",message="credentials go in secretRef or in the URL, not both",fieldPath=.secretRef
type Source struct {
	// URL of the image:
	// http(s)://host/path;
	// s3://bucket/key, with the server in s3 (default AWS);
	// oci://registry/repository:tag or oci://registry/repository@sha256:<digest>,
	// an OCI artifact whose single layer, or single layer of media type
	// application/vnd.otaflow.firmware.v1, is the image.
	// The manager's egress policy decides which hosts may be reached.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https', 's3', 'oci']",message="url must be an absolute http, https, s3 or oci URL"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('s3://') || self.matches('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^?#]*[^/?#]$')",message="an s3 URL is s3://bucket/key, without port, query or fragment (the server goes in s3.endpoint)"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('oci://') || self.matches('^oci://[][a-zA-Z0-9.:-]+/[a-z0-9]+(([._]|__|-*)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-*)[a-z0-9]+)*)*(:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}|@sha256:[a-f0-9]{64})$')",message="an oci URL is oci://registry/repository:tag or oci://registry/repository@sha256:<64 hex>"
	URL string `json:"url"`

	// SHA256 of the plaintext image, lowercase hex. A mismatch makes the
	// release fail permanently.
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-f0-9]{64}$')",message="sha256 must be 64 lowercase hex characters"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="source.sha256 is immutable (it pins the image); create a new FirmwareRelease"
	// +kubebuilder:validation:MaxLength=64
	SHA256 string `json:"sha256"`

	// Size of the image in bytes, enforced when set. A controller-wide cap
	// applies as well.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Size *int64 `json:"size,omitempty"`

	// SecretRef names a Secret in the release's namespace with the
	// credentials for the source. For http, https and oci: the keys
	// username and password (basic authentication; a
	// kubernetes.io/basic-auth Secret), or token (sent as a bearer token).
	// For s3: accessKeyID and secretAccessKey, and optionally
	// sessionToken. Basic and bearer credentials are never sent to another
	// host than the URL's, redirects included.
	// +optional
	SecretRef *LocalSecretReference `json:"secretRef,omitempty"`

	// S3 locates the S3 API for an s3:// URL; the defaults are AWS's.
	// +optional
	S3 *S3Source `json:"s3,omitempty"`

	// OCI configures registry access for an oci:// URL.
	// +optional
	OCI *OCISource `json:"oci,omitempty"`
}

// LocalSecretReference names a Secret in the same namespace.
type LocalSecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// S3Source is where an s3:// image is served, with the same meaning and
// defaults as the blob store's s3:// URL parameters (docs/object-storage.md).
type S3Source struct {
	// Endpoint is host[:port] of the S3 API, without scheme. Default
	// s3.<region>.amazonaws.com, or s3.amazonaws.com without a region.
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:Pattern=`^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Region of the bucket, used to sign requests; default us-east-1.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`
	// +optional
	Region string `json:"region,omitempty"`
	// Insecure selects plain HTTP instead of HTTPS (an in-cluster or test
	// server). Credentials then travel unencrypted.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// OCISource configures access to an OCI registry.
type OCISource struct {
	// Insecure selects plain HTTP instead of HTTPS (an in-cluster or test
	// registry). Credentials then travel unencrypted.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// Keys of a source credentials Secret (spec.source.secretRef).
const (
	SourceSecretUsername        = "username"
	SourceSecretPassword        = "password"
	SourceSecretToken           = "token"
	SourceSecretAccessKeyID     = "accessKeyID"
	SourceSecretSecretAccessKey = "secretAccessKey"
	SourceSecretSessionToken    = "sessionToken"
)

// Condition reasons of a FirmwareRelease about its source.
const (
	// ReasonSourceForbidden: the manager's egress policy refuses the
	// source's host, an address it resolves to, or a redirect target.
	// Permanent until the spec or the policy changes.
	ReasonSourceForbidden = "SourceForbidden"
	// ReasonSourceCredentialsUnavailable: the secretRef Secret or one of
	// its keys is missing or unreadable; retried, and the Secret's
	// creation brings the release back at once.
	ReasonSourceCredentialsUnavailable = "SourceCredentialsUnavailable"
	// ReasonSourceCredentialsInvalid: the Secret's keys are a combination
	// the scheme cannot use (S3 keys for https, basic and token at once,
	// an empty value). Permanent until the Secret or spec changes.
	ReasonSourceCredentialsInvalid = "SourceCredentialsInvalid"
	// ReasonSourceAuthFailed: the source refused the credentials (or
	// their absence); retried with backoff.
	ReasonSourceAuthFailed = "SourceAuthFailed"
	// ReasonOCIArtifactInvalid: the OCI reference is an index, has no
	// layer, or several candidate layers. Permanent.
	ReasonOCIArtifactInvalid = "OCIArtifactInvalid"
)

// Signature carries the vendor signature and the keys trusted to have made it.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.bundleRef)",message="exactly one of value or bundleRef must be set"
type Signature struct {
	// Value is the base64 signature over the plaintext image, as
	// `cosign sign-blob --key` prints it.
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="size(self) % 4 == 0 && self.matches('^[A-Za-z0-9+/]+={0,2}$')",message="value must be standard base64 (as cosign sign-blob prints it)"
	// +optional
	Value string `json:"value,omitempty"`

	// BundleRef points at a ConfigMap key holding a cosign bundle (JSON, as
	// written by `cosign sign-blob --bundle`).
	// +optional
	BundleRef *ConfigMapKeyReference `json:"bundleRef,omitempty"`

	// PublicKeys trusted to sign this image; any one verifying is enough.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	PublicKeys []PublicKeySource `json:"publicKeys"`
}

// PublicKeySource names where a PEM public key is stored.
type PublicKeySource struct {
	// SecretRef is a key in a Secret of the release's namespace holding a PEM
	// (PKIX) public key: ECDSA, Ed25519 or RSA.
	SecretRef SecretKeyReference `json:"secretRef"`
}

// SecretKeyReference names one key of a Secret in the same namespace.
type SecretKeyReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// ConfigMapKeyReference names one key of a ConfigMap in the same namespace.
type ConfigMapKeyReference struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// Artifact is the encrypted image devices download.
type Artifact struct {
	// PlainSHA256 of the verified plaintext image (hex).
	PlainSHA256 string `json:"plainSHA256"`
	// Size of the plaintext image in bytes.
	Size int64 `json:"size"`
	// PlainSHA1 of the plaintext image (hex), for hawkBit DDI clients,
	// which check the SHA-1 of what they download. Artifacts built before
	// this field existed get it (and plainMD5) when the controller next
	// reconciles the release, from the stored blob.
	// +optional
	PlainSHA1 string `json:"plainSHA1,omitempty"`
	// PlainMD5 of the plaintext image (hex), for DDI clients as well.
	// +optional
	PlainMD5 string `json:"plainMD5,omitempty"`
	// Filename DDI clients see: spec.artifactFilename, or the name derived
	// from the source when the artifact was built.
	// +optional
	Filename string `json:"filename,omitempty"`
	// EncryptedSHA256 of the encrypted blob (hex); also its blob ID.
	EncryptedSHA256 string `json:"encryptedSHA256"`
	// EncryptedSize of the blob in bytes.
	EncryptedSize int64 `json:"encryptedSize"`
	// Suite of the encryption format, "otaflow-enc/v1".
	Suite string `json:"suite"`
	// KeySecretName is the Secret holding the content key.
	KeySecretName string `json:"keySecretName"`
	// Version and SecurityVersion the artifact was built for (copied from
	// the spec, which cannot change them).
	// +optional
	Version string `json:"version,omitempty"`
	// +optional
	SecurityVersion int64 `json:"securityVersion,omitempty"`
	// ManifestDigest is the OCI manifest the image was pulled from
	// (sha256:…), for oci:// sources: what the tag resolved to when the
	// artifact was built.
	// +optional
	ManifestDigest string `json:"manifestDigest,omitempty"`
	// Mender is what the header of a Mender artifact says (spec.format
	// Mender).
	// +optional
	Mender *MenderArtifact `json:"mender,omitempty"`
	// Generation of the release the artifact was built or last verified
	// for. The OTA server serves the artifact only while it equals
	// metadata.generation, so a spec change is never answered with bytes
	// verified against the old spec.
	// +optional
	Generation int64 `json:"generation,omitempty"`
}

// MenderArtifact is the header of a release's Mender artifact.
type MenderArtifact struct {
	// Name is the artifact_name: what mender-client reports running once
	// it installed the artifact, and maps back to this release's version.
	Name string `json:"name"`
	// DeviceTypes the artifact is compatible with (artifact_depends).
	DeviceTypes []string `json:"deviceTypes"`
	// PayloadTypes, one per payload (rootfs-image, or an update module).
	// +optional
	PayloadTypes []string `json:"payloadTypes,omitempty"`
	// Signed: the artifact carries a Mender signature (manifest.sig),
	// which clients with ArtifactVerifyKey check.
	// +optional
	Signed bool `json:"signed,omitempty"`
}

// Verification records which key verified the signature.
type Verification struct {
	// Key that verified the signature, as "secret/key".
	Key string `json:"key"`
	// KeyID is the base64 SHA-256 fingerprint of the key (cosign's key hint).
	KeyID string `json:"keyID"`
	// Signature is the verified signature (base64), from spec.signature.value
	// or the bundle; the OTA server hands it to devices, which check it
	// again over the decrypted image.
	// +optional
	Signature string `json:"signature,omitempty"`
	// InputsDigest fingerprints the signature and trusted keys checked, so a
	// change to either triggers a new verification.
	InputsDigest string `json:"inputsDigest"`
	// Time of the verification.
	Time metav1.Time `json:"time"`
}

// FirmwareReleaseStatus is written by the controller.
type FirmwareReleaseStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Artifact is set once the image is verified and encrypted.
	// +optional
	Artifact *Artifact `json:"artifact,omitempty"`

	// Verification is set once the signature verified.
	// +optional
	Verification *Verification `json:"verification,omitempty"`

	// Conditions: Ready, Verified, and Reconciling/Stalled as kstatus wants.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FirmwareRelease is a signed firmware image, verified and encrypted once for
// delivery to devices.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fwr,categories=ota
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="SecVer",type=integer,JSONPath=`.spec.securityVersion`
// +kubebuilder:printcolumn:name="Format",type=string,JSONPath=`.spec.format`,priority=1
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.artifact.size`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FirmwareRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FirmwareReleaseSpec   `json:"spec"`
	Status FirmwareReleaseStatus `json:"status,omitempty"`
}

// FirmwareReleaseList is a list of FirmwareReleases.
// +kubebuilder:object:root=true
type FirmwareReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FirmwareRelease `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FirmwareRelease{}, &FirmwareReleaseList{})
}

// GetConditions returns the conditions.
func (r *FirmwareRelease) GetConditions() []metav1.Condition { return r.Status.Conditions }

// SetConditions replaces the conditions.
func (r *FirmwareRelease) SetConditions(c []metav1.Condition) { r.Status.Conditions = c }
