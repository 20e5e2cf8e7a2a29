package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/fetch"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// ReleaseFinalizer keeps a release until its blobs and keys are removed and
// no Rollout references it.
const ReleaseFinalizer = "ota.otaflow.io/release-cleanup"

// Event actions (events.k8s.io requires one).
const (
	actionVerify  = "Verify"
	actionFetch   = "Fetch"
	actionStore   = "Store"
	actionCleanup = "Cleanup"
)

// FirmwareReleaseReconciler verifies and encrypts firmware images.
type FirmwareReleaseReconciler struct {
	client.Client
	// APIReader reads Secrets and ConfigMaps uncached.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Blobs     blobstore.Store
	Fetcher   *fetch.Fetcher
	Clock     clock.PassiveClock
	// FetchTimeout bounds one fetch-verify-encrypt pass.
	FetchTimeout time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the backoff of transient
	// failures (fetch errors, storage errors).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// MaxConcurrentBuilds is how many releases are reconciled (fetched,
	// verified, encrypted) at once, so one large or slow image does not
	// hold up the others; the work queue never runs one release twice at
	// once. Default DefaultMaxConcurrentBuilds.
	MaxConcurrentBuilds int
}

// DefaultMaxConcurrentBuilds: builds are mostly waiting on the network and
// the blob store, and each holds one 16 KiB chunk buffer, so a few at once
// cost little.
const DefaultMaxConcurrentBuilds = 4

// +kubebuilder:rbac:groups=ota.otaflow.io,resources=firmwarereleases,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=firmwarereleases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=firmwarereleases/finalizers,verbs=update
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=rollouts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile fetches a release, runs its steps and patches its status once.
func (r *FirmwareReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	// Read live, not from the cache: a reconcile triggered by the key
	// Secret it just wrote could otherwise see the release without its new
	// artifact, build a second one and garbage-collect the first. Release
	// reconciles are rare and a build is expensive, so one GET is cheap.
	rel := &otav1.FirmwareRelease{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, rel); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patcher := newStatusPatcher(r.Client, rel)
	defer func() {
		if !rel.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(rel, ReleaseFinalizer) {
			return // released for deletion: nothing left to patch
		}
		if err := patcher.Patch(ctx, rel); client.IgnoreNotFound(err) != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	if !rel.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, rel)
	}
	if !controllerutil.ContainsFinalizer(rel, ReleaseFinalizer) {
		patch := client.MergeFrom(rel.DeepCopy())
		controllerutil.AddFinalizer(rel, ReleaseFinalizer)
		if err := r.Patch(ctx, rel, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		patcher.Reset(rel)
	}
	return r.reconcileNormal(ctx, rel, patcher)
}

// reconcileNormal makes sure the release has a verified, encrypted artifact
// confirmed for the current generation.
func (r *FirmwareReleaseReconciler) reconcileNormal(ctx context.Context, rel *otav1.FirmwareRelease, patcher *statusPatcher[*otav1.FirmwareRelease]) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	current, err := r.artifactCurrent(ctx, rel)
	if err != nil {
		return r.fail(ctx, rel, err)
	}
	if !current && rel.Status.Artifact != nil {
		// Another image is pinned now, or the blob or its key is gone:
		// nothing is left to confirm, only to rebuild.
		logger.Info("stored artifact is not the pinned image or is incomplete, withdrawing it", "encryptedSHA256", rel.Status.Artifact.EncryptedSHA256)
		rel.Status.Artifact = nil
		rel.Status.Verification = nil
	}

	// Missing or unreadable inputs fail here without touching the artifact
	// (see fail): a GitOps prune and re-create of a key Secret must not cost
	// a rebuild.
	in, err := loadVerifyInputs(ctx, r.APIReader, rel)
	if err != nil {
		return r.fail(ctx, rel, err)
	}

	if current {
		if v := rel.Status.Verification; v != nil && v.InputsDigest == in.Digest {
			// Same image, same signature and keys: the artifact holds for
			// this generation as it is.
			if !hasPlainSums(rel.Status.Artifact) {
				// Built before plaintext SHA-1/MD5 were recorded: read
				// them from the blob. The artifact stays servable
				// meanwhile; nothing about it changes but the new fields.
				logger.Info("recording plaintext SHA-1 and MD5 of the stored artifact", "encryptedSHA256", rel.Status.Artifact.EncryptedSHA256)
				key, err := r.readContentKey(ctx, rel)
				if err != nil {
					return r.fail(ctx, rel, fmt.Errorf("%w: read content key: %w", errStorage, err))
				}
				if err := r.backfillPlainSums(ctx, rel, key); err != nil {
					return r.fail(ctx, rel, err)
				}
			}
			confirmArtifact(rel)
			r.markReady(rel, false)
			return ctrl.Result{}, r.collectGarbage(ctx, rel)
		}
		logger.Info("signature or trusted keys changed, verifying the stored artifact again")
		r.markProgressing(rel, "signature or trusted keys changed: verifying the stored artifact again")
		if err := patcher.Patch(ctx, rel); err != nil {
			return ctrl.Result{}, err
		}
		key, err := r.readContentKey(ctx, rel)
		if err != nil {
			return r.fail(ctx, rel, fmt.Errorf("%w: read content key: %w", errStorage, err))
		}
		nv, err := r.reverify(ctx, rel, key, in)
		if err != nil {
			return r.fail(ctx, rel, err)
		}
		rel.Status.Verification = nv
		confirmArtifact(rel)
		r.markReady(rel, true)
		return ctrl.Result{}, r.collectGarbage(ctx, rel)
	}

	// A build is expensive: make sure the cache is not behind this
	// release's own last status patch (the key Secret a build writes
	// starts the next reconcile at once, often before the patch that
	// recorded the artifact reaches the cache), which would build it twice.
	if stale, err := r.staleCache(ctx, rel); err != nil || stale {
		return ctrl.Result{Requeue: stale}, err
	}

	// Source credentials are read only now, when there is something to
	// fetch: a Ready release does not depend on its source's Secret.
	src, err := fetchSource(ctx, r.APIReader, rel)
	if err != nil {
		return r.fail(ctx, rel, err)
	}
	// A build can take minutes: show Reconciling while it runs.
	r.markProgressing(rel, "fetching, verifying and encrypting "+fetch.RedactURL(rel.Spec.Source.URL))
	if err := patcher.Patch(ctx, rel); err != nil {
		return ctrl.Result{}, err
	}
	b, err := r.buildArtifact(ctx, rel, in, src)
	if err != nil {
		return r.fail(ctx, rel, err)
	}
	rel.Status.Artifact = &b.artifact
	rel.Status.Verification = &b.verification
	confirmArtifact(rel)
	r.markReady(rel, true)
	logger.Info("artifact ready", "plainSHA256", b.artifact.PlainSHA256, "encryptedSHA256", b.artifact.EncryptedSHA256, "size", b.artifact.Size, "key", b.verification.Key)
	return ctrl.Result{}, r.collectGarbage(ctx, rel)
}

// confirmArtifact records that the artifact was built or verified for the
// current spec. The OTA server serves it only while artifact.generation is
// metadata.generation. Artifacts written before these fields existed get
// them here, without a rebuild. A derived filename, once recorded, stays
// through source URL edits: a DDI client's download of it may be under way.
func confirmArtifact(rel *otav1.FirmwareRelease) {
	art := rel.Status.Artifact
	art.Version = rel.Spec.Version
	art.SecurityVersion = rel.Spec.SecurityVersion
	art.Generation = rel.Generation
	if f := rel.Spec.ArtifactFilename; f != "" || art.Filename == "" {
		art.Filename = artifactFilename(rel)
	}
}

// artifactCurrent reports whether status.artifact is the image the spec pins
// and its blob and key are still there.
func (r *FirmwareReleaseReconciler) artifactCurrent(ctx context.Context, rel *otav1.FirmwareRelease) (bool, error) {
	art := rel.Status.Artifact
	if art == nil || art.PlainSHA256 != rel.Spec.Source.SHA256 {
		return false, nil
	}
	if s := rel.Spec.Source.Size; s != nil && *s != art.Size {
		return false, nil
	}
	ok, err := r.blobExists(ctx, art.EncryptedSHA256)
	if err != nil || !ok {
		return false, err
	}
	// Live, not from the cache: a key Secret written a moment ago and not
	// yet cached would otherwise withdraw the artifact it belongs to.
	var s metav1.PartialObjectMetadata
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.APIReader.Get(ctx, keySecretName(rel), &s); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("%w: get key Secret: %w", errStorage, err)
	}
	return true, nil
}

// staleCache reports whether the API server holds a newer version of the
// release than the cached one being reconciled.
func (r *FirmwareReleaseReconciler) staleCache(ctx context.Context, rel *otav1.FirmwareRelease) (bool, error) {
	var live metav1.PartialObjectMetadata
	live.SetGroupVersionKind(otav1.GroupVersion.WithKind("FirmwareRelease"))
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(rel), &live); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return live.ResourceVersion != rel.ResourceVersion, nil
}

func keySecretName(rel *otav1.FirmwareRelease) types.NamespacedName {
	return types.NamespacedName{Namespace: rel.Namespace, Name: rel.Status.Artifact.KeySecretName}
}

// fail records a failed step. Permanent failures stall the release until its
// spec or inputs change; transient ones are retried with backoff. Only a
// definite verification failure withdraws the artifact: missing or unreadable
// inputs leave it (and its blob and key) in place, and the release not Ready,
// so the catalog stops serving it until the inputs are back.
func (r *FirmwareReleaseReconciler) fail(ctx context.Context, rel *otav1.FirmwareRelease, err error) (ctrl.Result, error) {
	f := classifyFailure(err)
	msg := err.Error()
	gen := rel.Generation
	_, inputs := asInputsError(err)
	switch {
	case f.Withdraw:
		setCondition(rel, otav1.ConditionVerified, metav1.ConditionFalse, f.Reason, msg, gen)
		rel.Status.Artifact = nil
		rel.Status.Verification = nil
	case inputs:
		setCondition(rel, otav1.ConditionVerified, metav1.ConditionUnknown, f.Reason, "cannot verify: "+msg, gen)
	case rel.Status.Artifact == nil:
		setCondition(rel, otav1.ConditionVerified, metav1.ConditionUnknown, otav1.ReasonPending, "not verified yet: "+msg, gen)
	}
	setCondition(rel, otav1.ConditionReady, metav1.ConditionFalse, f.Reason, msg, gen)
	action := actionFetch
	switch {
	case f.Withdraw || inputs:
		action = actionVerify
	case f.Reason == otav1.ReasonStorageFailed:
		action = actionStore
	}
	r.Recorder.Eventf(rel, nil, corev1.EventTypeWarning, f.Reason, action, "%s", msg)

	if f.Permanent {
		setCondition(rel, otav1.ConditionStalled, metav1.ConditionTrue, f.Reason, msg, gen)
		meta.RemoveStatusCondition(&rel.Status.Conditions, otav1.ConditionReconciling)
		rel.Status.ObservedGeneration = gen
		if gcErr := r.collectGarbage(ctx, rel); gcErr != nil {
			return ctrl.Result{}, gcErr
		}
		// Nothing to retry: a spec change or a watched Secret/ConfigMap
		// change brings the release back.
		return ctrl.Result{}, nil
	}
	// No garbage collection here: the artifact a transient failure keeps
	// must not be taken for garbage.
	setCondition(rel, otav1.ConditionReconciling, metav1.ConditionTrue, f.Reason, "retrying: "+msg, gen)
	meta.RemoveStatusCondition(&rel.Status.Conditions, otav1.ConditionStalled)
	rel.Status.ObservedGeneration = gen
	return ctrl.Result{}, fmt.Errorf("release %s/%s: %w", rel.Namespace, rel.Name, err)
}

// markProgressing shows a build or re-verification under way. Ready goes
// False even if it was True: the artifact is not confirmed for this
// generation (or these keys) until the step ends.
func (r *FirmwareReleaseReconciler) markProgressing(rel *otav1.FirmwareRelease, msg string) {
	gen := rel.Generation
	setCondition(rel, otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonProgressing, msg, gen)
	meta.RemoveStatusCondition(&rel.Status.Conditions, otav1.ConditionStalled)
	setCondition(rel, otav1.ConditionReady, metav1.ConditionFalse, otav1.ReasonProgressing, msg, gen)
	rel.Status.ObservedGeneration = gen
}

// markReady sets the success conditions; announce emits the event (only when
// something new was verified, so idle reconciles stay quiet).
func (r *FirmwareReleaseReconciler) markReady(rel *otav1.FirmwareRelease, announce bool) {
	gen := rel.Generation
	art, v := rel.Status.Artifact, rel.Status.Verification
	vmsg := fmt.Sprintf("signature verified with %s (key ID %s)", v.Key, v.KeyID)
	rmsg := fmt.Sprintf("encrypted artifact %s ready: %d bytes (%d encrypted)", art.EncryptedSHA256, art.Size, art.EncryptedSize)
	setCondition(rel, otav1.ConditionVerified, metav1.ConditionTrue, otav1.ReasonSignatureVerified, vmsg, gen)
	setCondition(rel, otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady, rmsg, gen)
	meta.RemoveStatusCondition(&rel.Status.Conditions, otav1.ConditionReconciling)
	meta.RemoveStatusCondition(&rel.Status.Conditions, otav1.ConditionStalled)
	rel.Status.ObservedGeneration = gen
	if announce {
		r.Recorder.Eventf(rel, nil, corev1.EventTypeNormal, otav1.ReasonSignatureVerified, actionVerify, "%s", vmsg)
		r.Recorder.Eventf(rel, nil, corev1.EventTypeNormal, otav1.ReasonArtifactReady, actionStore, "%s", rmsg)
	}
}

func setCondition(rel *otav1.FirmwareRelease, typ string, status metav1.ConditionStatus, reason, msg string, gen int64) {
	const maxMessage = 32 << 10 // conditions' message limit
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	meta.SetStatusCondition(&rel.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
}

// collectGarbage removes key Secrets (and their blobs) of this release other
// than the current artifact's: left by a spec change, a withdrawn artifact,
// or a crash between writing the Secret and updating status. It runs only
// once status.artifact is settled (success or permanent failure), never on
// a transient failure, where a kept artifact must stay.
func (r *FirmwareReleaseReconciler) collectGarbage(ctx context.Context, rel *otav1.FirmwareRelease) error {
	keep := ""
	keepBlob := ""
	if rel.Status.Artifact != nil {
		keep = rel.Status.Artifact.KeySecretName
		keepBlob = rel.Status.Artifact.EncryptedSHA256
	}
	return r.deleteKeys(ctx, rel, keep, keepBlob)
}

// deleteKeys deletes the release's key Secrets except keep, and their blobs
// except keepBlob.
func (r *FirmwareReleaseReconciler) deleteKeys(ctx context.Context, rel *otav1.FirmwareRelease, keep, keepBlob string) error {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := r.List(ctx, &list, client.InNamespace(rel.Namespace), client.MatchingLabels{LabelReleaseUID: string(rel.UID)}); err != nil {
		return fmt.Errorf("list key Secrets: %w", err)
	}
	var errs []error
	for i := range list.Items {
		s := &list.Items[i]
		if s.Name == keep {
			continue
		}
		if d := s.Annotations[AnnotationBlob]; d != "" && d != keepBlob {
			if err := r.Blobs.Delete(ctx, d); err != nil {
				errs = append(errs, fmt.Errorf("delete blob %s: %w", d, err))
				continue // keep the Secret: it is the record of the blob
			}
		}
		if err := r.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("delete key Secret %s: %w", s.Name, err))
		}
	}
	return kerrors.NewAggregate(errs)
}

// reconcileDelete removes blobs and keys once no Rollout references the
// release, then lets it go.
func (r *FirmwareReleaseReconciler) reconcileDelete(ctx context.Context, rel *otav1.FirmwareRelease) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(rel, ReleaseFinalizer) {
		return ctrl.Result{}, nil
	}
	var rollouts otav1.RolloutList
	if err := r.List(ctx, &rollouts, client.InNamespace(rel.Namespace), client.MatchingFields{indexRolloutRelease: rel.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list rollouts of release: %w", err)
	}
	if n := len(rollouts.Items); n > 0 {
		names := make([]string, 0, n)
		for _, ro := range rollouts.Items {
			names = append(names, ro.Name)
		}
		msg := fmt.Sprintf("deletion waits for %d rollout(s) that reference this release: %s", n, strings.Join(names, ", "))
		setCondition(rel, otav1.ConditionReconciling, metav1.ConditionTrue, otav1.ReasonDeleting, msg, rel.Generation)
		r.Recorder.Eventf(rel, nil, corev1.EventTypeNormal, "DeletionBlocked", actionCleanup, "%s", msg)
		return ctrl.Result{}, nil // the Rollout watch brings us back
	}
	if err := r.deleteKeys(ctx, rel, "", ""); err != nil {
		return ctrl.Result{}, err
	}
	patch := client.MergeFrom(rel.DeepCopy())
	controllerutil.RemoveFinalizer(rel, ReleaseFinalizer)
	if err := r.Patch(ctx, rel, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller and its watches.
func (r *FirmwareReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.FetchTimeout == 0 {
		r.FetchTimeout = 30 * time.Minute
	}
	if r.RetryBaseDelay == 0 {
		r.RetryBaseDelay = 2 * time.Second
	}
	if r.RetryMaxDelay == 0 {
		r.RetryMaxDelay = 5 * time.Minute
	}
	if r.MaxConcurrentBuilds <= 0 {
		r.MaxConcurrentBuilds = DefaultMaxConcurrentBuilds
	}
	specOrDeletion := predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool { return !e.ObjectNew.GetDeletionTimestamp().IsZero() },
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&otav1.FirmwareRelease{}, builder.WithPredicates(specOrDeletion)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.releasesForSecret), builder.OnlyMetadata).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.releasesForConfigMap), builder.OnlyMetadata).
		Watches(&otav1.Rollout{}, handler.EnqueueRequestsFromMapFunc(releaseOfRollout), builder.WithPredicates(predicate.Funcs{
			// Only deletions matter here: they may unblock a release's deletion.
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(e event.UpdateEvent) bool { return !e.ObjectNew.GetDeletionTimestamp().IsZero() },
		})).
		WithOptions(controller.Options{
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](r.RetryBaseDelay, r.RetryMaxDelay),
			MaxConcurrentReconciles: r.MaxConcurrentBuilds,
		}).
		Named("firmwarerelease").
		Complete(r)
}

// releasesForSecret maps a Secret to the releases that trust keys in it,
// fetch their image with its credentials, or own it (content keys).
func (r *FirmwareReleaseReconciler) releasesForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	reqs := r.releasesByIndex(ctx, o, indexReleaseSecrets)
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "FirmwareRelease" && ref.APIVersion == otav1.GroupVersion.String() {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
		}
	}
	return reqs
}

func (r *FirmwareReleaseReconciler) releasesForConfigMap(ctx context.Context, o client.Object) []reconcile.Request {
	return r.releasesByIndex(ctx, o, indexReleaseConfigMaps)
}

func (r *FirmwareReleaseReconciler) releasesByIndex(ctx context.Context, o client.Object, index string) []reconcile.Request {
	return referrers(ctx, r.Client, &otav1.FirmwareReleaseList{}, index, o)
}

func releaseOfRollout(_ context.Context, o client.Object) []reconcile.Request {
	ro, ok := o.(*otav1.Rollout)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ro.Namespace, Name: ro.Spec.ReleaseRef.Name}}}
}
