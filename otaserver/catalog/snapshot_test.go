package catalog

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

func rel(name, version string, ready bool) otav1.FirmwareRelease {
	r := otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       otav1.FirmwareReleaseSpec{Version: version, Compatibility: otav1.Compatibility{DeviceTypes: []string{"t1"}}},
		Status:     otav1.FirmwareReleaseStatus{Artifact: &otav1.Artifact{EncryptedSHA256: "e", KeySecretName: name + "-key", Version: version}},
	}
	r.UID = types.UID("uid-" + r.Name)
	if ready {
		r.Status.Conditions = []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue}}
	}
	return r
}

func key(name, uid string, n int) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{otav1.LabelReleaseUID: uid}},
		Data:       map[string][]byte{otav1.ContentKeyField: make([]byte, n)},
	}
}

func TestBuild(t *testing.T) {
	t0 := time.Now()
	rels := []otav1.FirmwareRelease{rel("a", "2.0.0", true), rel("b", "1.0.0", true), rel("c", "1.0.0", false), rel("d", "3.0.0", true)}
	keys := map[string]*corev1.Secret{
		"ns/a-key": key("a-key", "uid-a", 32),
		"ns/b-key": key("b-key", "uid-b", 32),
		"ns/c-key": key("c-key", "uid-c", 32),
		"ns/d-key": key("d-key", "uid-other", 32), // not this release's Secret
	}
	mk := func(name string, created time.Time, release string) otav1.Rollout {
		return otav1.Rollout{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(created)},
			Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: release},
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
				Waves:    []otav1.Wave{{Name: "c", Devices: intstr.FromInt32(5)}, {Name: "all", Devices: intstr.FromString("100%")}}},
			Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing},
		}
	}
	newer, older, broken := mk("newer", t0.Add(time.Hour), "a"), mk("older", t0, "a"), mk("nokey", t0, "d")
	newer.UID, older.UID, broken.UID = "u-new", "u-old", "u-broken"
	s := Build([]otav1.Rollout{newer, older, broken}, rels, keys)

	if len(s.Rollouts) != 3 || s.Rollouts[2].Name != "newer" {
		t.Fatalf("order: %v %v %v", s.Rollouts[0].Name, s.Rollouts[1].Name, s.Rollouts[2].Name)
	}
	ro := s.Rollout("ns/older")
	if ro == nil || !ro.View.ReleaseReady || ro.View.Version.String() != "2.0.0" || ro.DeviceTimeout != DefaultDeviceTimeout {
		t.Fatalf("older: %+v", ro)
	}
	if want := []rollout.WaveSize{{Count: 5}, {Percent: 100}}; ro.Waves[0] != want[0] || ro.Waves[1] != want[1] {
		t.Fatalf("waves %+v", ro.Waves)
	}
	if ro.View.RollbackRequested {
		t.Fatal("rollback requested without status.rollbackRequested")
	}
	if s.RolloutByUID("u-broken").View.ReleaseReady {
		t.Fatal("release whose key Secret belongs to another release is usable")
	}
	if got := s.Matching("ns", "t1", map[string]string{"region": "eu"}); len(got) != 3 {
		t.Fatalf("matching %d", len(got))
	}
	if got := s.Matching("ns", "t2", map[string]string{"region": "eu"}); len(got) != 0 {
		t.Fatal("incompatible type matched")
	}
	if got := s.Matching("ns", "t1", map[string]string{"region": "us"}); len(got) != 0 {
		t.Fatal("selector ignored")
	}
	if p := s.PreviousRelease("ns", "1.0.0", "t1"); p == nil || p.Name != "b" {
		t.Fatalf("previous release %+v (c is not Ready)", p)
	}
	if p := s.PreviousRelease("ns", "1.0.0", "t9"); p != nil {
		t.Fatal("previous release for another type")
	}
}

func TestVendorSignature(t *testing.T) {
	rel := func(value, verified string) *otav1.FirmwareRelease {
		fr := &otav1.FirmwareRelease{}
		fr.Spec.Signature.Value = value
		if verified != "" {
			fr.Status.Verification = &otav1.Verification{Signature: verified}
		}
		return fr
	}
	for _, tc := range []struct{ name, value, verified, want string }{
		{"bundle release: the verified signature", "", "c2ln", "c2ln"},
		{"value release verified", "dmFs", "dmFs", "dmFs"},
		{"recorded before verification kept it", "dmFs", "", "dmFs"},
	} {
		if got := vendorSignature(rel(tc.value, tc.verified)); got != tc.want {
			t.Errorf("%s: vendorSignature = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestArtifactOfCurrentGeneration: an artifact built for an older
// generation of the release (its spec changed since) is not served, so a
// new spec is never paired with bytes verified against the old one.
func TestArtifactOfCurrentGeneration(t *testing.T) {
	keys := map[string]*corev1.Secret{"ns/a-key": key("a-key", "uid-a", 32)}
	for _, tc := range []struct {
		name   string
		mutate func(*otav1.FirmwareRelease)
		usable bool
	}{
		{"current", func(r *otav1.FirmwareRelease) {}, true},
		{"spec changed, artifact not confirmed yet", func(r *otav1.FirmwareRelease) { r.Generation = 2 }, false},
		{"confirmed for the new generation", func(r *otav1.FirmwareRelease) { r.Generation, r.Status.Artifact.Generation = 2, 2 }, true},
		{"artifact built for another version", func(r *otav1.FirmwareRelease) { r.Status.Artifact.Version = "1.9.0" }, false},
		{"artifact built for another securityVersion", func(r *otav1.FirmwareRelease) { r.Status.Artifact.SecurityVersion = 3 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rel("a", "2.0.0", true)
			tc.mutate(&r)
			s := Build(nil, []otav1.FirmwareRelease{r}, keys)
			if got := s.PreviousRelease("ns", "2.0.0", "t1") != nil; got != tc.usable {
				t.Fatalf("usable = %v, want %v", got, tc.usable)
			}
		})
	}
}

// TestInvalidSelectorKept: a rollout whose selector does not parse (stored
// before the API validated selectors) stays in the catalog — the reporter
// never forgets it — but selects no device.
func TestInvalidSelectorKept(t *testing.T) {
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "typo", UID: "u-typo"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "a"},
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "region", Operator: "in", Values: []string{"eu"}}}},
			Waves:    []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}},
	}
	s := Build([]otav1.Rollout{ro}, []otav1.FirmwareRelease{rel("a", "2.0.0", true)}, nil)
	got := s.RolloutByUID("u-typo")
	if got == nil || got.Problem == "" {
		t.Fatalf("rollout with a bad selector: %+v", got)
	}
	if got.Matches(ro.Namespace, "t1", map[string]string{"region": "eu"}) || got.Matches(ro.Namespace, "t1", nil) {
		t.Fatal("a rollout with a bad selector selects devices")
	}
}

// TestViewOfFinishedRollout: committed, continuous and succeededAt come
// from the spec and status as the rules read them.
func TestViewOfFinishedRollout(t *testing.T) {
	done := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", UID: "u"},
		Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "a"}, TargetSelection: otav1.TargetContinuous,
			Waves: []otav1.Wave{{Name: "c", Devices: intstr.FromInt32(1)}, {Name: "all", Devices: intstr.FromString("100%")}}},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutSucceeded, Waves: []otav1.WaveStatus{
			{Name: "c", CompletedAt: &metav1.Time{Time: done.Add(-time.Hour)}}, {Name: "all", CompletedAt: &done}}},
	}
	v := Build([]otav1.Rollout{ro}, nil, nil).RolloutByUID("u").View
	if !v.Committed || !v.Continuous || !v.SucceededAt.Equal(done.Time) {
		t.Fatalf("view %+v", v)
	}
	ro.Spec.Abort = true
	if v := Build([]otav1.Rollout{ro}, nil, nil).RolloutByUID("u").View; v.Committed {
		t.Fatal("an aborted rollout commits")
	}
	ro.Spec.Abort, ro.Status.Phase, ro.Spec.Commit = false, otav1.RolloutProgressing, true
	if v := Build([]otav1.Rollout{ro}, nil, nil).RolloutByUID("u").View; !v.Committed || !v.SucceededAt.IsZero() {
		t.Fatalf("spec.commit while progressing: %+v", v)
	}
}

// A rollout selects devices of its own namespace only; cluster-wide devices
// (Namespace "") only in the cluster-wide mode, whose fleets get another
// SelectorKey (so switching modes resyncs them).
func TestMatchesTenants(t *testing.T) {
	rel := otav1.FirmwareRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "r"},
		Spec: otav1.FirmwareReleaseSpec{Version: "1.0.0", Compatibility: otav1.Compatibility{DeviceTypes: []string{"t"}}}}
	relB := rel
	relB.Namespace = "b"
	ro := func(ns string, sel *metav1.LabelSelector) otav1.Rollout {
		return otav1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ro", UID: types.UID("uid-" + ns)},
			Spec: otav1.RolloutSpec{ReleaseRef: otav1.ReleaseReference{Name: "r"}, Selector: sel,
				Waves: []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}}}
	}
	eu := &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
	for _, tc := range []struct {
		name        string
		clusterWide bool
		rolloutNS   string
		sel         *metav1.LabelSelector
		deviceNS    string
		want        bool
	}{
		{"own namespace", false, "a", eu, "a", true},
		{"own namespace, empty selector", false, "a", nil, "a", true},
		{"other namespace", false, "a", eu, "b", false},
		{"other namespace, empty selector", false, "a", nil, "b", false},
		{"cluster-wide device, namespaced mode", false, "a", nil, "", false},
		{"cluster-wide device, cluster-wide mode", true, "a", nil, "", true},
		{"other namespace, cluster-wide mode", true, "a", nil, "b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := BuildWith(BuildOptions{ClusterWideDevices: tc.clusterWide},
				[]otav1.Rollout{ro(tc.rolloutNS, tc.sel)}, []otav1.FirmwareRelease{rel, relB}, nil)
			if got := len(s.Matching(tc.deviceNS, "t", map[string]string{"region": "eu"})) == 1; got != tc.want {
				t.Fatalf("device of %q matched by rollout of %q: %v, want %v", tc.deviceNS, tc.rolloutNS, got, tc.want)
			}
		})
	}
	ns := Build([]otav1.Rollout{ro("a", nil)}, []otav1.FirmwareRelease{rel}, nil).Rollouts[0].SelectorKey
	cw := BuildWith(BuildOptions{ClusterWideDevices: true}, []otav1.Rollout{ro("a", nil)}, []otav1.FirmwareRelease{rel}, nil).Rollouts[0].SelectorKey
	if ns == cw {
		t.Fatalf("the fleet key %q does not change with the tenancy mode", ns)
	}
}
