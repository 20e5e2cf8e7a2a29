package v1alpha1

// Content-key Secrets: one per encrypted blob, owned by its release. The
// manager writes them and the OTA server reads them, so their shape is part
// of the API both components meet through.
const (
	// LabelReleaseUID marks content-key Secrets with their release's UID.
	LabelReleaseUID = "ota.otaflow.io/release-uid"
	// AnnotationBlob names the blob (encrypted SHA-256) a key Secret opens.
	AnnotationBlob = "ota.otaflow.io/blob"
	// ContentKeySecretType is the type of content-key Secrets.
	ContentKeySecretType = "ota.otaflow.io/content-key"
	// ContentKeyField is the data key holding the 32-byte content key.
	ContentKeyField = "contentKey"
)
