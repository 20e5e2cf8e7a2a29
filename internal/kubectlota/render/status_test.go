package render

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

var now = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *metav1.Time {
	t := metav1.NewTime(now.Add(-d))
	return &t
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// threeWaves is a rollout of 200 devices: canary (10, manual gate), early
// (25%, 30m pause), all (100%).
func threeWaves() *otav1.Rollout {
	return &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "sensor-2.1.0-eu", Namespace: "fleet-eu", Generation: 3},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "sensor-2.1.0"},
			Waves: []otav1.Wave{
				{Name: "canary", Devices: intstr.FromInt32(10), Pause: &otav1.WavePause{}},
				{Name: "early", Devices: intstr.FromString("25%"), Pause: &otav1.WavePause{Duration: dur(30 * time.Minute)}},
				{Name: "all", Devices: intstr.FromString("100%")},
			},
			SuccessThreshold: "95%", FailureThreshold: "5%", MinFailures: 3,
		},
	}
}

func release() *otav1.FirmwareRelease {
	return &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "sensor-2.1.0", Namespace: "fleet-eu"},
		Spec:       otav1.FirmwareReleaseSpec{Version: "2.1.0", SecurityVersion: 8},
		Status: otav1.FirmwareReleaseStatus{Conditions: []metav1.Condition{
			{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: otav1.ReasonArtifactReady},
		}},
	}
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: *ago(since)}
}

func progressing() *otav1.Rollout {
	ro := threeWaves()
	ro.Spec.ApprovedWave = "canary"
	ro.Status = otav1.RolloutStatus{
		ObservedGeneration: 3, Phase: otav1.RolloutProgressing, CurrentWave: 1,
		WaveSummary: "2/3 early", Progress: "31/200",
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
			{Device: "sensor-0042", Wave: "early", Reason: "install failed: signature check\nof the slot failed", Time: *ago(20 * time.Minute)},
			{Device: "sensor-0107", Wave: "early", Reason: "timed out after 2h0m0s", Time: *ago(5 * time.Minute)},
		},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "WaveProgressing", "wave 2/3 early open: 21 of 34 reachable devices succeeded, 33 needed (95%); 12 in progress, 0 not offered yet, 2 offline, 4 skipped", 90*time.Minute),
			cond("Reconciling", metav1.ConditionTrue, "WaveProgressing", "wave 2/3 early open", 90*time.Minute),
		},
	}
	return ro
}

func awaitingApproval() *otav1.Rollout {
	ro := threeWaves()
	ro.Status = otav1.RolloutStatus{
		ObservedGeneration: 3, Phase: otav1.RolloutPaused, CurrentWave: 0, Progress: "10/200",
		Fleet: &otav1.FleetStatus{Size: 200, ObservedWave: 0, ReportedAt: ago(20 * time.Second)},
		Waves: []otav1.WaveStatus{
			{Name: "canary", Targeted: 10, Offered: 10, Succeeded: 10, StartedAt: ago(time.Hour), CompletedAt: ago(10 * time.Minute)},
		},
		Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "AwaitingApproval", `wave canary completed; set spec.approvedWave to "canary" to open wave early`, 10*time.Minute),
		},
	}
	return ro
}

func timedPause() *otav1.Rollout {
	ro := progressing()
	ro.Status.Phase = otav1.RolloutPaused
	ro.Status.Waves[1] = otav1.WaveStatus{Name: "early", Targeted: 40, Offered: 40, Succeeded: 39, Failed: 1, StartedAt: ago(90 * time.Minute), CompletedAt: ago(10 * time.Minute)}
	ro.Status.PausedUntil = ago(-20 * time.Minute)
	ro.Status.RecentFailures = nil
	ro.Status.Fleet.Skipped = nil
	ro.Status.Conditions = []metav1.Condition{
		cond("Ready", metav1.ConditionFalse, "TimedPause", "wave early completed; wave all opens at 2026-03-02T12:20:00Z", 10*time.Minute),
	}
	return ro
}

func aborted() *otav1.Rollout {
	ro := progressing()
	ro.Status.Phase = otav1.RolloutAborted
	ro.Status.AbortReason = "FailureThreshold: wave early: 4 of 34 offered devices failed or timed out (11.8%), above failureThreshold 5% with minFailures 3"
	ro.Status.RollbackRequested = true
	ro.Status.Waves[1].Failed, ro.Status.Waves[1].InProgress = 3, 0
	ro.Status.Waves[1].Canceled, ro.Status.Waves[1].RolledBack, ro.Status.Waves[1].RollbackFailed = 10, 15, 1
	ro.Status.Conditions = []metav1.Condition{
		cond("Ready", metav1.ConditionFalse, "Aborted", ro.Status.AbortReason, 5*time.Minute),
		cond("Stalled", metav1.ConditionTrue, "Aborted", ro.Status.AbortReason, 5*time.Minute),
	}
	return ro
}

func succeededContinuous() *otav1.Rollout {
	ro := threeWaves()
	ro.Spec.TargetSelection = otav1.TargetContinuous
	ro.Spec.ApprovedWave = "early"
	ro.Status = otav1.RolloutStatus{
		ObservedGeneration: 3, Phase: otav1.RolloutSucceeded, CurrentWave: 2, Progress: "200/200",
		Fleet: &otav1.FleetStatus{Size: 200, ObservedWave: 2, ReportedAt: ago(3 * time.Second)},
		Waves: []otav1.WaveStatus{
			{Name: "canary", Targeted: 10, Offered: 10, Succeeded: 10, StartedAt: ago(30 * time.Hour), CompletedAt: ago(29 * time.Hour)},
			{Name: "early", Targeted: 40, Offered: 40, Succeeded: 40, StartedAt: ago(28 * time.Hour), CompletedAt: ago(27 * time.Hour)},
			{Name: "all", Targeted: 150, Offered: 150, Succeeded: 150, StartedAt: ago(26 * time.Hour), CompletedAt: ago(25 * time.Hour)},
		},
		Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Succeeded", "all 3 waves completed", 25*time.Hour)},
	}
	return ro
}

func pausedBySpecStaleGeneration() *otav1.Rollout {
	ro := progressing()
	ro.Spec.Paused = true
	ro.Generation = 4
	ro.Status.RecentFailures = nil
	return ro
}

func TestStatusGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   StatusInput
	}{
		{"status-progressing", StatusInput{Rollout: progressing(), Release: release()}},
		{"status-awaiting-approval", StatusInput{Rollout: awaitingApproval(), Release: release()}},
		{"status-timed-pause", StatusInput{Rollout: timedPause(), Release: release()}},
		{"status-aborted", StatusInput{Rollout: aborted(), Release: release()}},
		{"status-succeeded-continuous", StatusInput{Rollout: succeededContinuous(), Release: release()}},
		{"status-paused-by-spec", StatusInput{Rollout: pausedBySpecStaleGeneration(), Release: release()}},
		{"status-pending-release-missing", StatusInput{Rollout: threeWaves(), ReleaseProblem: "FirmwareRelease not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = now
			var b strings.Builder
			if err := Status(&b, tc.in); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.String())
		})
	}
}

// The golden files are read by people; these are the facts they must show.
func TestStatusFacts(t *testing.T) {
	render := func(ro *otav1.Rollout) string {
		var b strings.Builder
		if err := Status(&b, StatusInput{Rollout: ro, Release: release(), Now: now}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name string
		ro   *otav1.Rollout
		want []string
		not  []string
	}{
		{"progressing", progressing(), []string{
			"sensor-2.1.0, version 2.1.0, securityVersion 8",
			"Progressing (WaveProgressing)",
			"2/3 early",
			"200 devices, 2 conflicts",
			// early: 40 targeted, 4 skipped, 2 offline → 34 reachable, 95% → 33.
			"wave early: 21 of 34 reachable devices succeeded, 33 needed",
			// 2 failures of 34 offered; minFailures 3 → 1 more aborts.
			"wave early: 2 of 34 offered devices failed or timed out (5.9%); 1 more failure aborts the rollout",
			// all waves: 2 of 44 offered; > 2.2 and ≥ 3 → 3 failures, 1 more.
			"all waves: 2 of 44 offered devices failed or timed out (4.5%); 1 more failure aborts the rollout",
			"[####################]", // canary: all succeeded
			"approval: approved",
			"pause 30m",
			"2 (1 timed out)",
			"install failed: signature check of the slot failed",
			"3  skipped: the device runs the same or a newer version",
		}, []string{"Next:", "Aborted:"}},
		{"awaiting approval", awaitingApproval(), []string{
			"wave canary waits for approval: kubectl ota approve sensor-2.1.0-eu canary",
			"approval: WAITING",
			"completed 10m ago",
		}, nil},
		{"timed pause", timedPause(), []string{"wave all opens at 2026-03-02T12:20:00Z (in 20m)", "pause 30m, ends in 20m"}, nil},
		{"aborted", aborted(), []string{
			"Aborted:    FailureThreshold: wave early",
			"devices that took the release are offered their previous one",
			"early: 10 canceled, 15 rolled back, 1 rollback failed",
			"wave early: 4 of 34 offered devices failed or timed out (11.8%)\n",
			"aborted",
		}, []string{"more failure"}},
		{"continuous", succeededContinuous(), []string{"keeps offering the release to devices that join", "Continuous"}, []string{"more failure"}},
		{"paused by spec", pausedBySpecStaleGeneration(), []string{
			"paused by spec.paused: kubectl ota resume sensor-2.1.0-eu",
			"not acted on the latest spec yet (generation 4, observed 3)",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := render(tc.ro)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q:\n%s", n, out)
				}
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Minute:                "30m",
		2 * time.Hour:                   "2h",
		90 * time.Minute:                "1h30m",
		45 * time.Second:                "45s",
		2*time.Hour + 30*time.Second:    "2h0m30s",
		10*time.Minute + 30*time.Second: "10m30s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
