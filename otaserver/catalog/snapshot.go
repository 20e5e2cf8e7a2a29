package catalog

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Defaults for unset durations (the API server defaults them too).
const (
	DefaultDeviceTimeout = 2 * time.Hour
	DefaultOfflineAfter  = 24 * time.Hour
)

// Release is a FirmwareRelease as the server needs it.
type Release struct {
	Namespace, Name string
	Version         string
	SecurityVersion int64
	DeviceTypes     map[string]bool
	// Usable: Ready, with an artifact and its content key loaded.
	Usable          bool
	Artifact        otav1.Artifact
	VendorSignature string
	ContentKey      []byte
	// Format of the image (spec.format; Raw when unset).
	Format otav1.ReleaseFormat
}

// Key is "namespace/name".
func (r *Release) Key() string { return r.Namespace + "/" + r.Name }

// Accepts reports whether the release fits the device type.
func (r *Release) Accepts(deviceType string) bool { return r.DeviceTypes[deviceType] }

// DDIReady reports whether hawkBit DDI clients may be sent the release: it
// is Usable, a SWUpdate or RAUC image, and its artifact records the
// plaintext SHA-1 and MD5 and the file name they check. Otherwise reason
// says what is missing.
func (r *Release) DDIReady() (reason string, ok bool) {
	if !r.Usable {
		return "release not servable (not Ready for its generation, or its content key not loaded)", false
	}
	if !r.Format.DDI() {
		return fmt.Sprintf("format %s is for otaflow agents only (DDI takes %s or %s)", r.Format, otav1.FormatSWUpdate, otav1.FormatRAUC), false
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"plainSHA1", r.Artifact.PlainSHA1}, {"plainMD5", r.Artifact.PlainMD5}, {"filename", r.Artifact.Filename},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "status.artifact lacks " + strings.Join(missing, ", "), false
	}
	return "", true
}

// MenderReady reports whether mender-client devices may be sent the
// release: it is Usable, a Mender artifact, and its header is recorded.
// Otherwise reason says what is missing.
func (r *Release) MenderReady() (reason string, ok bool) {
	switch {
	case !r.Usable:
		return "release not servable (not Ready for its generation, or its content key not loaded)", false
	case r.Format != otav1.FormatMender:
		return fmt.Sprintf("format %s is not a Mender artifact", r.Format), false
	case r.Artifact.Mender == nil || r.Artifact.Mender.Name == "":
		return "status.artifact lacks the Mender header", false
	}
	return "", true
}

// Rollout is a Rollout compiled for fast matching.
type Rollout struct {
	Namespace, Name, UID string
	Created              time.Time
	Selector             labels.Selector
	// SelectorKey changes whenever the selector does (fleet resync).
	SelectorKey        string
	Release            *Release // nil while the release does not exist
	WaveNames          []string
	Waves              []rollout.WaveSize
	DeviceTimeout      time.Duration
	OfflineAfter       time.Duration
	MaxOffersPerMinute int32
	// Problem says why the spec cannot be applied ("" when it can); such
	// a rollout selects no new device but is never forgotten.
	Problem string
	// View is the offer-decision view, without cutoffs.
	View rollout.RolloutView
	// clusterDevices: the rollout also selects cluster-wide devices
	// (enrolled through the cluster-wide Secret, Namespace "").
	clusterDevices bool
}

// Key is "namespace/name".
func (r *Rollout) Key() string { return r.Namespace + "/" + r.Name }

// Matches reports whether the device is in the rollout's fleet: it belongs
// to the rollout's namespace (its tenant; cluster-wide devices only when
// the catalog admits them), the selector matches its labels and the release
// accepts its type.
func (r *Rollout) Matches(namespace, deviceType string, l map[string]string) bool {
	return r.Admits(namespace) &&
		r.Release != nil && r.Release.Accepts(deviceType) && r.Selector.Matches(labels.Set(l))
}

// Admits reports whether devices of the namespace (the tenant) may be in
// the rollout's fleet.
func (r *Rollout) Admits(namespace string) bool {
	return namespace == r.Namespace || (namespace == "" && r.clusterDevices)
}

// Mismatch says why the device is not in the rollout's fleet ("" when
// Matches would report it is), for explanations.
func (r *Rollout) Mismatch(namespace, deviceType string, l map[string]string) string {
	switch {
	case !r.Admits(namespace):
		return "the device belongs to another namespace"
	case r.Release == nil:
		return "the rollout's release does not exist"
	case !r.Release.Accepts(deviceType):
		return fmt.Sprintf("the release is not built for device type %q", deviceType)
	case !r.Selector.Matches(labels.Set(l)):
		return fmt.Sprintf("the device's labels do not match the selector %q", r.Selector.String())
	}
	return ""
}

// Snapshot is an immutable view of the catalog.
type Snapshot struct {
	// Rollouts, oldest first: the order rollout.CheckIn breaks ties in.
	Rollouts       []*Rollout
	seenResolution time.Duration
	byKey          map[string]*Rollout
	byUID          map[string]*Rollout
	byVersion      map[string][]*Release // namespace "\x00" version
	// byMenderName: usable Mender releases by namespace "\x00" artifact
	// name, highest version first.
	byMenderName map[string][]*Release
}

// MenderVersion is the version of the usable Mender release of the
// namespace whose artifact is named name and accepts the device type (the
// highest version if several are); ok is false when none is.
func (s *Snapshot) MenderVersion(namespace, name, deviceType string) (version string, ok bool) {
	for _, r := range s.byMenderName[namespace+"\x00"+name] {
		if r.Accepts(deviceType) {
			return r.Version, true
		}
	}
	return "", false
}

// Rollout returns the rollout "namespace/name", or nil.
func (s *Snapshot) Rollout(key string) *Rollout { return s.byKey[key] }

// RolloutByUID returns the rollout with the UID, or nil.
func (s *Snapshot) RolloutByUID(uid string) *Rollout { return s.byUID[uid] }

// Matching returns the rollouts whose fleet includes the device, oldest first.
func (s *Snapshot) Matching(namespace, deviceType string, l map[string]string) []*Rollout {
	var out []*Rollout
	for _, r := range s.Rollouts {
		if r.Matches(namespace, deviceType, l) {
			out = append(out, r)
		}
	}
	return out
}

// PreviousRelease is the usable release of the namespace with the version
// (compared as semantic versions) that accepts the device type (the first
// by name if several do).
func (s *Snapshot) PreviousRelease(namespace, version, deviceType string) *Release {
	for _, r := range s.byVersion[namespace+"\x00"+rollout.ParseVersion(version).Canonical()] {
		if r.Usable && r.Accepts(deviceType) {
			return r
		}
	}
	return nil
}

// BuildOptions tune how a snapshot is compiled.
type BuildOptions struct {
	// ClusterWideDevices lets every rollout also select cluster-wide
	// devices (Namespace "", enrolled through the cluster-wide enrollment
	// Secret): the single-team mode. Off, a rollout selects only devices
	// of its own namespace.
	ClusterWideDevices bool
}

// Build compiles a snapshot from objects with the zero BuildOptions (each
// rollout selects devices of its own namespace only). keys maps
// "namespace/secret" to the content key Secret.
func Build(rollouts []otav1.Rollout, releases []otav1.FirmwareRelease, keys map[string]*corev1.Secret) *Snapshot {
	return BuildWith(BuildOptions{}, rollouts, releases, keys)
}

// BuildWith is Build with options.
func BuildWith(o BuildOptions, rollouts []otav1.Rollout, releases []otav1.FirmwareRelease, keys map[string]*corev1.Secret) *Snapshot {
	s := &Snapshot{byKey: map[string]*Rollout{}, byUID: map[string]*Rollout{}, byVersion: map[string][]*Release{}, byMenderName: map[string][]*Release{}}
	rels := map[string]*Release{}
	for i := range releases {
		r := compileRelease(&releases[i], keys)
		rels[r.Key()] = r
		k := r.Namespace + "\x00" + rollout.ParseVersion(r.Version).Canonical()
		s.byVersion[k] = append(s.byVersion[k], r)
		if _, ok := r.MenderReady(); ok {
			mk := r.Namespace + "\x00" + r.Artifact.Mender.Name
			s.byMenderName[mk] = append(s.byMenderName[mk], r)
		}
	}
	for _, l := range s.byMenderName {
		slices.SortFunc(l, func(a, b *Release) int {
			if c := rollout.ParseVersion(b.Version).Compare(rollout.ParseVersion(a.Version)); c != 0 {
				return c
			}
			return cmp.Compare(a.Name, b.Name)
		})
	}
	for _, l := range s.byVersion {
		slices.SortFunc(l, func(a, b *Release) int { return cmp.Compare(a.Name, b.Name) })
	}
	for i := range rollouts {
		ro := &rollouts[i]
		r := compileRollout(ro, rels[ro.Namespace+"/"+ro.Spec.ReleaseRef.Name])
		if r == nil {
			continue
		}
		if o.ClusterWideDevices {
			// Another fleet: a changed mode resyncs it like a new selector.
			r.clusterDevices = true
			r.SelectorKey += "|cluster-wide"
		}
		s.Rollouts = append(s.Rollouts, r)
		s.byKey[r.Key()] = r
		s.byUID[r.UID] = r
	}
	slices.SortFunc(s.Rollouts, func(a, b *Rollout) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Key(), b.Key())
	})
	s.seenResolution = MaxSeenResolution
	for _, r := range s.Rollouts {
		s.seenResolution = min(s.seenResolution, r.OfflineAfter/10)
	}
	return s
}

// MaxSeenResolution bounds SeenResolution.
const MaxSeenResolution = time.Minute

// SeenResolution is how stale a device's stored last-seen time may be: a
// tenth of the shortest offlineAfter of the rollouts, at most a minute. A
// check-in within it of the stored time needs no write, which spares a
// fleet polling every few seconds most of its last-seen writes, while no
// device can be counted offline because of it.
func (s *Snapshot) SeenResolution() time.Duration { return s.seenResolution }

func compileRelease(fr *otav1.FirmwareRelease, keys map[string]*corev1.Secret) *Release {
	r := &Release{
		Namespace: fr.Namespace, Name: fr.Name, Version: fr.Spec.Version,
		SecurityVersion: fr.Spec.SecurityVersion, DeviceTypes: map[string]bool{},
		VendorSignature: vendorSignature(fr), Format: fr.Spec.Format,
	}
	if r.Format == "" {
		r.Format = otav1.FormatRaw // the API default, for objects built in code
	}
	for _, t := range fr.Spec.Compatibility.DeviceTypes {
		r.DeviceTypes[t] = true
	}
	// Only an artifact built (or verified again) for the current
	// generation is served: after a spec change the old bytes are not
	// paired with the new spec while the controller catches up.
	if a := servableArtifact(fr); a != nil {
		r.Artifact = *a
		if sec := keys[fr.Namespace+"/"+a.KeySecretName]; sec != nil && sec.Labels[otav1.LabelReleaseUID] == string(fr.UID) {
			if k := sec.Data[otav1.ContentKeyField]; len(k) == envelope.KeySize {
				r.ContentKey = k
				r.Usable = true
			}
		}
	}
	return r
}

func compileRollout(ro *otav1.Rollout, rel *Release) *Rollout {
	sel := labels.Everything()
	selKey := ""
	problem := ""
	if ro.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(ro.Spec.Selector)
		if err != nil {
			// Stored before the API validated selectors. The rollout is
			// kept (its records, fleet and failures are never forgotten
			// while it exists) but selects no new device; the controller
			// reports the problem as a condition.
			sel, selKey, problem = labels.Nothing(), "\x00invalid", "selector: "+err.Error()
		} else {
			sel, selKey = s, s.String()
		}
	}
	r := &Rollout{
		Namespace: ro.Namespace, Name: ro.Name, UID: string(ro.UID),
		Created: ro.CreationTimestamp.Time, Selector: sel, Release: rel,
		DeviceTimeout: DefaultDeviceTimeout, OfflineAfter: DefaultOfflineAfter, Problem: problem,
	}
	if rel != nil {
		// A new compatibility list changes the fleet as much as a new
		// selector does.
		types := make([]string, 0, len(rel.DeviceTypes))
		for t := range rel.DeviceTypes {
			types = append(types, t)
		}
		slices.Sort(types)
		selKey += "|" + strings.Join(types, ",")
	}
	r.SelectorKey = selKey
	if ro.Spec.DeviceTimeout != nil && ro.Spec.DeviceTimeout.Duration > 0 {
		r.DeviceTimeout = ro.Spec.DeviceTimeout.Duration
	}
	if ro.Spec.OfflineAfter != nil && ro.Spec.OfflineAfter.Duration > 0 {
		r.OfflineAfter = ro.Spec.OfflineAfter.Duration
	}
	if ro.Spec.MaxOffersPerMinute != nil {
		r.MaxOffersPerMinute = *ro.Spec.MaxOffersPerMinute
	}
	for _, w := range ro.Spec.Waves {
		r.WaveNames = append(r.WaveNames, w.Name)
		r.Waves = append(r.Waves, waveSize(w.Devices))
	}
	rollbackOnAbort := ro.Spec.RollbackOnAbort == nil || *ro.Spec.RollbackOnAbort
	phase := rollout.Phase(ro.Status.Phase)
	r.View = rollout.RolloutView{
		Phase:             phase,
		CurrentWave:       int(ro.Status.CurrentWave),
		Paused:            ro.Spec.Paused,
		Abort:             ro.Spec.Abort,
		RollbackRequested: ro.Status.RollbackRequested && rollbackOnAbort,
		Committed:         !ro.Spec.Abort && phase != rollout.Aborted && (phase == rollout.Succeeded || ro.Spec.Commit),
		Continuous:        ro.Spec.TargetSelection == otav1.TargetContinuous,
	}
	if phase == rollout.Succeeded {
		r.View.SucceededAt = succeededAt(ro)
	}
	if rel != nil {
		r.View.ReleaseReady = rel.Usable
		r.View.Version = rollout.ParseVersion(rel.Version)
		r.View.SecurityVersion = rel.SecurityVersion
	}
	return r
}

// succeededAt is when the last wave completed: the moment the rollout
// succeeded, which Snapshot targeting compares enrollment times with.
func succeededAt(ro *otav1.Rollout) time.Time {
	var last time.Time
	for _, w := range ro.Status.Waves {
		if w.CompletedAt != nil && w.CompletedAt.After(last) {
			last = w.CompletedAt.Time
		}
	}
	return last
}

// waveSize parses "N" or "N%"; anything else opens nothing (the API
// server's validation makes that unreachable).
func waveSize(v intstr.IntOrString) rollout.WaveSize {
	if v.Type == intstr.Int {
		return rollout.WaveSize{Count: int64(v.IntVal)}
	}
	p, err := intstr.GetScaledValueFromIntOrPercent(&v, 100, false)
	if err != nil || !strings.HasSuffix(v.StrVal, "%") {
		return rollout.WaveSize{}
	}
	return rollout.WaveSize{Percent: p}
}

// vendorSignature is the signature the controller verified (it covers
// bundles too); spec.signature.value for releases verified before the
// controller recorded it.
func vendorSignature(fr *otav1.FirmwareRelease) string {
	if v := fr.Status.Verification; v != nil && v.Signature != "" {
		return v.Signature
	}
	return fr.Spec.Signature.Value
}
