package reporter

import (
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

func TestBuildStatus(t *testing.T) {
	ro := &catalog.Rollout{Namespace: "ns", Name: "ro", WaveNames: []string{"canary", "all"}}
	ro.View.CurrentWave = 1
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := devicestore.Counts{FleetSize: 10, Conflicts: 2, Waves: map[int]*devicestore.WaveCounts{
		0: {Targeted: 2, States: map[rollout.State]int64{rollout.StateSucceeded: 1, rollout.StateFailed: 1}},
		1: {Targeted: 8, States: map[rollout.State]int64{
			rollout.StateOffered: 1, rollout.StateDownloading: 1, rollout.StateInstalled: 1, rollout.StateConfirmed: 1,
			rollout.StateTimedOut: 1, rollout.StateCanceled: 1, rollout.StateRolledBack: 1,
		}},
	}}
	s := BuildStatus(ro, c, []devicestore.Failure{{DeviceID: "d", Wave: 1, Reason: "x", At: now}}, now)
	w0, w1 := s.Waves[0], s.Waves[1]
	if w0.Name != "canary" || w0.Targeted != 2 || w0.Offered != 2 || w0.Succeeded != 1 || w0.Failed != 1 || w0.InProgress != 0 {
		t.Fatalf("wave 0 %+v", w0)
	}
	if w1.Targeted != 8 || w1.Offered != 7 || w1.InProgress != 4 || w1.TimedOut != 1 || w1.Succeeded != 0 || w1.RolledBack != 1 {
		t.Fatalf("wave 1 %+v", w1)
	}
	if s.Fleet.Size != 10 || s.Fleet.Conflicts != 2 || s.Fleet.ObservedWave != 1 {
		t.Fatalf("fleet %+v", s.Fleet)
	}
	if len(s.RecentFailures) != 1 || s.RecentFailures[0].Wave != "all" {
		t.Fatalf("failures %+v", s.RecentFailures)
	}
	// reportedAt alone is not a change worth an API write.
	later := BuildStatus(ro, c, []devicestore.Failure{{DeviceID: "d", Wave: 1, Reason: "x", At: now}}, now.Add(time.Minute))
	if later.comparable() != s.comparable() {
		t.Fatal("reportedAt changes the comparable form")
	}
	u := s.Unstructured(ro)
	if u.GetKind() != "Rollout" || u.GetName() != "ro" {
		t.Fatalf("apply object %v", u.Object)
	}
	status := u.Object["status"].(map[string]any)
	if len(status) != 3 {
		t.Fatalf("status carries fields the server does not own: %v", status)
	}
}
