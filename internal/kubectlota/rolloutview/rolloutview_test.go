package rolloutview

import (
	"testing"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/rollout"
)

func TestFailuresToAbort(t *testing.T) {
	th := Thresholds{Failure: 0.05, MinFailures: 3}
	for _, tc := range []struct {
		name   string
		c      rollout.Counts
		t      Thresholds
		more   int64
		offers bool
	}{
		{"nothing offered", rollout.Counts{}, th, 0, false},
		{"minFailures rules a small wave", rollout.Counts{Offered: 10, Failed: 1}, th, 2, true},
		// 5% of 100 is 5: the threshold needs more than 5, so 6.
		{"the share rules a large wave", rollout.Counts{Offered: 100, Failed: 2, TimedOut: 1}, th, 3, true},
		{"exactly at the share is not above it", rollout.Counts{Offered: 100, Failed: 5}, th, 1, true},
		{"already over", rollout.Counts{Offered: 10, Failed: 5}, th, 0, true},
		// 30% of 10 is 3 in exact arithmetic (float gives 3.0000000000000004).
		{"float error", rollout.Counts{Offered: 10}, Thresholds{Failure: 0.3, MinFailures: 1}, 4, true},
		{"zero threshold", rollout.Counts{Offered: 50}, Thresholds{Failure: 0, MinFailures: 1}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			more, ok := FailuresToAbort(tc.t, tc.c)
			if more != tc.more || ok != tc.offers {
				t.Errorf("FailuresToAbort = %d, %v; want %d, %v", more, ok, tc.more, tc.offers)
			}
			// Adding that many failures must cross the threshold as the
			// rules count it, and one fewer must not.
			if !ok || more == 0 {
				return
			}
			crosses := func(f int64) bool {
				return f >= tc.t.MinFailures && float64(f) > tc.t.Failure*float64(tc.c.Offered)+1e-9
			}
			if f := tc.c.Failures() + more; !crosses(f) || crosses(f-1) {
				t.Errorf("%d failures: crosses %v, %d: crosses %v", f, crosses(f), f-1, crosses(f-1))
			}
		})
	}
}

func TestSuccessNeeded(t *testing.T) {
	for _, tc := range []struct {
		c    rollout.Counts
		s    float64
		want int64
	}{
		{rollout.Counts{Targeted: 10}, 0.95, 10},
		{rollout.Counts{Targeted: 40, Skipped: 4, Offline: 2}, 0.95, 33},
		{rollout.Counts{Targeted: 10}, 0.3, 3},
		{rollout.Counts{Targeted: 5, Offline: 5}, 0.95, 1},
		{rollout.Counts{Targeted: 5, Skipped: 5}, 0.95, 0},
		{rollout.Counts{Targeted: 5}, 0, 0},
	} {
		if got := SuccessNeeded(Thresholds{Success: tc.s}, tc.c); got != tc.want {
			t.Errorf("SuccessNeeded(%g, %+v) = %d, want %d", tc.s, tc.c, got, tc.want)
		}
	}
}

func TestFinished(t *testing.T) {
	for _, tc := range []struct {
		phase  otav1.RolloutPhase
		target otav1.TargetSelection
		want   bool
	}{
		{"", "", false},
		{otav1.RolloutPending, "", false},
		{otav1.RolloutProgressing, "", false},
		{otav1.RolloutPaused, "", false},
		{otav1.RolloutSucceeded, "", true},
		{otav1.RolloutSucceeded, otav1.TargetSnapshot, true},
		{otav1.RolloutSucceeded, otav1.TargetContinuous, false},
		{otav1.RolloutAborted, otav1.TargetContinuous, true},
		{otav1.RolloutAborted, "", true},
	} {
		ro := &otav1.Rollout{Spec: otav1.RolloutSpec{TargetSelection: tc.target}, Status: otav1.RolloutStatus{Phase: tc.phase}}
		if got := Finished(ro); got != tc.want {
			t.Errorf("Finished(%s, %s) = %v, want %v", tc.phase, tc.target, got, tc.want)
		}
	}
}

func TestThresholdsDefaults(t *testing.T) {
	th, err := ThresholdsOf(&otav1.Rollout{})
	if err != nil {
		t.Fatal(err)
	}
	if th.Success != 0.95 || th.Failure != 0.05 || th.MinFailures != 3 || th.SuccessText != "95%" {
		t.Errorf("defaults %+v", th)
	}
	if _, err := ThresholdsOf(&otav1.Rollout{Spec: otav1.RolloutSpec{SuccessThreshold: "lots"}}); err == nil {
		t.Error("a threshold without % was read")
	}
}
