package kubectlota

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

const (
	rolloutName = "sensor-2.1.0-eu"
	releaseName = "sensor-2.1.0"
)

// createRelease makes a Ready FirmwareRelease sensor-2.1.0.
func createRelease(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	rel := &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Name: releaseName, Namespace: ns},
		Spec: otav1.FirmwareReleaseSpec{
			Version: "2.1.0", SecurityVersion: 8,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{"sensor"}},
			Source:        otav1.Source{URL: "https://fw.example.com/sensor-2.1.0.bin", SHA256: strings.Repeat("ab", 32)},
			Signature: otav1.Signature{Value: "c2lnbmF0dXJl", PublicKeys: []otav1.PublicKeySource{
				{SecretRef: otav1.SecretKeyReference{Name: "vendor", Key: "cosign.pub"}},
			}},
		},
	}
	if err := env.k8s.Create(ctx, rel); err != nil {
		t.Fatalf("create release: %v", err)
	}
	deleteAtEnd(t, rel)
	rel.Status.Conditions = []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: otav1.ReasonArtifactReady, Message: "verified and stored", LastTransitionTime: *ago(4 * time.Hour)}}
	if err := env.k8s.Status().Update(ctx, rel); err != nil {
		t.Fatalf("release status: %v", err)
	}
}

// newRollout is the rollout of the examples: canary (10 devices, manual
// gate), early (25%, pause 30m), all (100%).
func newRollout(ns string) *otav1.Rollout {
	return &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: rolloutName, Namespace: ns},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: releaseName},
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			Waves: []otav1.Wave{
				{Name: "canary", Devices: intstr.FromInt32(10), Pause: &otav1.WavePause{}},
				{Name: "early", Devices: intstr.FromString("25%"), Pause: &otav1.WavePause{Duration: &metav1.Duration{Duration: 30 * time.Minute}}},
				{Name: "all", Devices: intstr.FromString("100%")},
			},
		},
	}
}

// createRollout creates ro (as the kubectl field manager, like a user's
// kubectl apply) and writes status with a status update.
func createRollout(t *testing.T, ro *otav1.Rollout, status otav1.RolloutStatus, opts ...client.CreateOption) *otav1.Rollout {
	t.Helper()
	ctx := context.Background()
	if err := env.k8s.Create(ctx, ro, opts...); err != nil {
		t.Fatalf("create rollout: %v", err)
	}
	deleteAtEnd(t, ro.DeepCopy())
	setStatus(t, ro, status)
	return ro
}

// setStatus writes the rollout's status as the controller and the OTA
// server would.
func setStatus(t *testing.T, ro *otav1.Rollout, status otav1.RolloutStatus) {
	t.Helper()
	ctx := context.Background()
	if err := env.k8s.Get(ctx, client.ObjectKeyFromObject(ro), ro); err != nil {
		t.Fatal(err)
	}
	status.ObservedGeneration = ro.Generation
	ro.Status = status
	if err := env.k8s.Status().Update(ctx, ro); err != nil {
		t.Fatalf("rollout status: %v", err)
	}
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: *ago(since)}
}

// progressingStatus: wave 2/3 early open, with failures, skipped and
// offline devices.
func progressingStatus() otav1.RolloutStatus {
	return otav1.RolloutStatus{
		Phase: otav1.RolloutProgressing, CurrentWave: 1, WaveSummary: "2/3 early", Progress: "31/200",
		Fleet: &otav1.FleetStatus{Size: 200, Conflicts: 2, ObservedWave: 1, ReportedAt: ago(12 * time.Second),
			Skipped: []otav1.ReasonCount{
				{Reason: "skipped: the device runs the same or a newer version", Count: 3},
				{Reason: "skipped: the release's securityVersion is below the device's security floor", Count: 1},
			}},
		Waves: []otav1.WaveStatus{
			{Name: "canary", Targeted: 10, Offered: 10, Succeeded: 10, StartedAt: ago(3 * time.Hour), CompletedAt: ago(2 * time.Hour)},
			{Name: "early", Targeted: 40, Offered: 34, InProgress: 12, Succeeded: 21, Failed: 1, TimedOut: 1, Skipped: 4, Offline: 2, StartedAt: ago(90 * time.Minute)},
		},
		RecentFailures: []otav1.DeviceFailure{
			{Device: "sensor-0042", Wave: "early", Reason: "install failed: exit status 1", Time: *ago(20 * time.Minute)},
			{Device: "sensor-0107", Wave: "early", Reason: "timed out after 2h0m0s", Time: *ago(5 * time.Minute)},
		},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "WaveProgressing", "wave 2/3 early open: 21 of 34 reachable devices succeeded, 33 needed (95%); 12 in progress, 0 not offered yet, 2 offline, 4 skipped", 90*time.Minute),
			cond("Reconciling", metav1.ConditionTrue, "WaveProgressing", "wave 2/3 early open: 21 of 34 reachable devices succeeded, 33 needed (95%); 12 in progress, 0 not offered yet, 2 offline, 4 skipped", 90*time.Minute),
		},
	}
}

// awaitingApprovalStatus: wave 1/3 canary completed, its manual gate holds.
func awaitingApprovalStatus() otav1.RolloutStatus {
	return otav1.RolloutStatus{
		Phase: otav1.RolloutPaused, CurrentWave: 0, WaveSummary: "1/3 canary", Progress: "10/200",
		Fleet: &otav1.FleetStatus{Size: 200, ReportedAt: ago(20 * time.Second)},
		Waves: []otav1.WaveStatus{
			{Name: "canary", Targeted: 10, Offered: 10, Succeeded: 10, StartedAt: ago(time.Hour), CompletedAt: ago(10 * time.Minute)},
		},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "AwaitingApproval", `wave canary completed; set spec.approvedWave to "canary" to open wave early`, 10*time.Minute),
		},
	}
}

// succeededStatus: every wave completed.
func succeededStatus() otav1.RolloutStatus {
	return otav1.RolloutStatus{
		Phase: otav1.RolloutSucceeded, CurrentWave: 2, WaveSummary: "3/3 all", Progress: "200/200",
		Fleet: &otav1.FleetStatus{Size: 200, ObservedWave: 2, ReportedAt: ago(3 * time.Second)},
		Waves: []otav1.WaveStatus{
			{Name: "canary", Targeted: 10, Offered: 10, Succeeded: 10, StartedAt: ago(30 * time.Hour), CompletedAt: ago(29 * time.Hour)},
			{Name: "early", Targeted: 40, Offered: 40, Succeeded: 40, StartedAt: ago(28 * time.Hour), CompletedAt: ago(27 * time.Hour)},
			{Name: "all", Targeted: 150, Offered: 150, Succeeded: 150, StartedAt: ago(26 * time.Hour), CompletedAt: ago(25 * time.Hour)},
		},
		Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Succeeded", "all 3 waves completed", 25*time.Hour)},
	}
}

// abortedStatus: aborted by the failure threshold in wave early.
func abortedStatus() otav1.RolloutStatus {
	s := progressingStatus()
	s.Phase = otav1.RolloutAborted
	s.AbortReason = "FailureThreshold: wave early: 4 of 34 offered devices failed or timed out (11.8%), above failureThreshold 5% with minFailures 3"
	s.RollbackRequested = true
	s.Waves[1].Failed, s.Waves[1].InProgress, s.Waves[1].Canceled, s.Waves[1].RolledBack = 3, 0, 10, 2
	s.Conditions = []metav1.Condition{
		cond("Ready", metav1.ConditionFalse, "Aborted", s.AbortReason, 5*time.Minute),
		cond("Stalled", metav1.ConditionTrue, "Aborted", s.AbortReason, 5*time.Minute),
	}
	return s
}

// get reads the rollout as it is now.
func get(t *testing.T, ns string) *otav1.Rollout {
	t.Helper()
	ro := &otav1.Rollout{}
	if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: rolloutName}, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}
