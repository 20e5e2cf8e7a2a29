package v1alpha1

// Condition types shared by both kinds. Ready, Reconciling and Stalled follow
// kstatus, so Flux computes health with no extra configuration.
const (
	// ConditionReady is always present: True when the object is fully usable.
	ConditionReady = "Ready"
	// ConditionReconciling is True only while the controller is working
	// towards the desired state; absent otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True only when progress needs a human; absent
	// otherwise.
	ConditionStalled = "Stalled"

	// ConditionVerified (FirmwareRelease) reports the vendor signature check.
	ConditionVerified = "Verified"
)

// FirmwareRelease condition reasons.
const (
	ReasonArtifactReady       = "ArtifactReady"
	ReasonProgressing         = "Progressing"
	ReasonFetchFailed         = "FetchFailed"
	ReasonDigestMismatch      = "DigestMismatch"
	ReasonSizeMismatch        = "SizeMismatch"
	ReasonImageTooLarge       = "ImageTooLarge"
	ReasonUnsupportedSource   = "UnsupportedSource"
	ReasonSignatureVerified   = "SignatureVerified"
	ReasonSignatureMalformed  = "SignatureMalformed"
	ReasonSignatureNotTrusted = "SignatureNotVerified"
	ReasonBundleDigest        = "BundleDigestMismatch"
	ReasonKeyUnavailable      = "PublicKeyUnavailable"
	ReasonKeyInvalid          = "PublicKeyInvalid"
	ReasonBundleUnavailable   = "BundleUnavailable"
	ReasonStorageFailed       = "StorageFailed"
	// ReasonMenderArtifactInvalid: a Mender release's image is not a
	// readable Mender artifact (its header says what is wrong).
	ReasonMenderArtifactInvalid = "MenderArtifactInvalid"
	// ReasonMenderArtifactMismatch: the Mender artifact's header does not
	// fit the release (a device type of compatibility.deviceTypes that the
	// artifact is not compatible with).
	ReasonMenderArtifactMismatch = "MenderArtifactMismatch"
	ReasonPending                = "Pending"
	ReasonDeleting               = "Deleting"
)
