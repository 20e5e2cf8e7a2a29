package render

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

func wave(i int) *int { return &i }

func TestWhyGolden(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "sensor-0042", Namespace: "fleet-eu"}
	for _, tc := range []struct {
		name string
		d    devv1.DeviceDecision
		want []string
	}{
		{"why-offer", devv1.DeviceDecision{ObjectMeta: meta, Action: "Offer", Rollout: "sensor-2.1.0-eu",
			Rollouts: []devv1.RolloutVerdict{
				{Rollout: "sensor-2.0.0-all", Release: "sensor-2.0.0", Version: "2.0.0", InFleet: true, Wave: wave(2), Verdict: devv1.VerdictDone, State: "succeeded"},
				{Rollout: "sensor-2.0.5-fix", Release: "sensor-2.0.5", Version: "2.0.5", InFleet: true, Wave: wave(0), Verdict: devv1.VerdictOffer, Reason: "another rollout acts on the device"},
				{Rollout: "sensor-2.1.0-eu", Release: "sensor-2.1.0", Version: "2.1.0", InFleet: true, Wave: wave(1), Verdict: devv1.VerdictActs, Reason: "Offer"},
				{Rollout: "gateway-1.4.0", Release: "gateway-1.4.0", Version: "1.4.0", Verdict: devv1.VerdictNotInFleet},
			}},
			[]string{"told to install release sensor-2.1.0 (version 2.1.0), offered by rollout sensor-2.1.0-eu", "wave 2", "another rollout acts on the device"}},
		{"why-nothing", devv1.DeviceDecision{ObjectMeta: meta, Action: "Nothing", Reason: "wave not open yet",
			Rollouts: []devv1.RolloutVerdict{
				{Rollout: "sensor-2.1.0-eu", Release: "sensor-2.1.0", Version: "2.1.0", InFleet: true, Wave: wave(2), Verdict: devv1.VerdictWait, Reason: "wave not open yet"},
				{Rollout: "sensor-1.9.0", Release: "sensor-1.9.0", Version: "1.9.0", InFleet: true, Verdict: devv1.VerdictSkip, State: "skipped", Reason: "skipped: the device runs the same or a newer version"},
				{Rollout: "sensor-2.0.0", Release: "sensor-2.0.0", Version: "2.0.0", InFleet: true, Verdict: devv1.VerdictCurrent},
			}},
			[]string{"nothing to do (wave not open yet)", "has nothing for the device yet: wave not open yet", "let go of the device (skipped): the device runs"}},
		{"why-rollback", devv1.DeviceDecision{ObjectMeta: meta, Action: "Rollback", Rollout: "sensor-2.1.0-eu",
			Rollouts: []devv1.RolloutVerdict{
				{Rollout: "sensor-2.1.0-eu", Release: "sensor-2.1.0", Version: "2.1.0", InFleet: true, Wave: wave(0), Verdict: devv1.VerdictActs, Reason: "Rollback", State: "succeeded"},
			}},
			[]string{"go back to its previous release: rollout sensor-2.1.0-eu was aborted", "acts on the device: it answers this check-in (Rollback)"}},
		{"why-no-rollouts", devv1.DeviceDecision{ObjectMeta: meta, Action: "Nothing"},
			[]string{"nothing to do.", "No rollout in the namespace considers the device."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := Why(&b, &tc.d); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			golden(t, tc.name, b.String())
		})
	}
}

func TestVerdictWords(t *testing.T) {
	for _, tc := range []struct {
		v    devv1.RolloutVerdict
		want string
	}{
		{devv1.RolloutVerdict{Verdict: devv1.VerdictNotInFleet, Reason: `the device's labels do not match the selector "region=eu"`},
			`does not select the device: the device's labels do not match the selector "region=eu"`},
		{devv1.RolloutVerdict{Verdict: devv1.VerdictNotInFleet, Reason: "the rollout does not select the device"},
			"the rollout does not select the device"},
		{devv1.RolloutVerdict{Verdict: devv1.VerdictNotInFleet}, "does not select the device"},
		{devv1.RolloutVerdict{Verdict: devv1.VerdictWait, Reason: "wave not open yet"}, "has nothing for the device yet: wave not open yet"},
		{devv1.RolloutVerdict{Verdict: "Pondering", Reason: "new to this client"}, "says Pondering: new to this client"},
	} {
		if got := verdictWords(tc.v, &devv1.DeviceDecision{}); got != tc.want {
			t.Errorf("%s/%q: %q, want %q", tc.v.Verdict, tc.v.Reason, got, tc.want)
		}
	}
}

func TestWhyActions(t *testing.T) {
	for act, want := range map[string]string{
		"Resend":  "again to install release r (version 1.0.0): its update in rollout ro is not finished",
		"Cancel":  "to cancel its update: rollout ro was aborted",
		"Commit":  "to commit: raise its security floor to the release it runs (rollout ro committed)",
		"Unknown": "Unknown (rollout ro)",
	} {
		d := &devv1.DeviceDecision{Action: act, Rollout: "ro", Rollouts: []devv1.RolloutVerdict{{Rollout: "ro", Release: "r", Version: "1.0.0"}}}
		if got := action(d); got != want {
			t.Errorf("%s: %q, want %q", act, got, want)
		}
	}
}

// Every reason the rules give for waiting or letting go of a device
// (internal/rollout, and the fronts' undeliverable reasons) reaches the
// reader, whatever the verdict it comes with.
func TestWhyShowsEveryReason(t *testing.T) {
	cases := []struct {
		verdict string
		reasons []string
	}{
		{devv1.VerdictSkip, []string{
			rollout.ReasonSkipNotNewer, rollout.ReasonSkipBelowFloor, rollout.ReasonSkipBadVersion,
			rollout.ReasonNoRollback, rollout.ReasonRollbackFloor, rollout.ReasonRollbackMoved,
			"skipped: the release is a raw image (spec.format Raw), which hawkBit DDI clients cannot install",
			"skipped: the release is not a Mender artifact (spec.format Raw), which mender-client cannot install",
		}},
		{devv1.VerdictWait, []string{
			rollout.WaitNotOffering, rollout.WaitCutoffs, rollout.WaitWaveNotOpen, rollout.WaitThrottled,
			rollout.WaitJoinedLate, rollout.WaitInstalling, rollout.WaitReleaseNotUsed, rollout.ReasonOtherOwner,
		}},
		{devv1.VerdictDone, []string{"failed: " + rollout.ReasonReverted, "timedOut: " + rollout.ReasonTimedOut, "canceled: " + rollout.ReasonAborted}},
		{devv1.VerdictCurrent, []string{rollout.ReasonAlreadyCurrent}},
		{devv1.VerdictNotInFleet, []string{"the device's labels do not match the selector \"region=eu\"", `the release is not built for device type "gw-v2"`}},
	}
	for _, tc := range cases {
		for _, reason := range tc.reasons {
			d := &devv1.DeviceDecision{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "ns"}, Action: "Nothing", Reason: rollout.WaitNone,
				Rollouts: []devv1.RolloutVerdict{{Rollout: "r", Verdict: tc.verdict, Reason: reason, InFleet: true}}}
			var b strings.Builder
			if err := Why(&b, d); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(reason, "skipped: ")
			if tc.verdict == devv1.VerdictCurrent {
				want = "already runs its release"
			}
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s %q: the output does not say %q:\n%s", tc.verdict, reason, want, b.String())
			}
		}
	}
}
