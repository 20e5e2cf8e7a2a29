package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
)

// Fleet life sizes: the main fleet, the devices that go offline before the
// fix-forward (10% of the fleet it opens on), and the devices that enroll
// late, already on the fix.
const (
	lifeMain = 40
	lifeAway = 5
	lifeLate = 5
	lifeNS   = "e2e-life"
	lifeRing = "life"
	// lifePoll is the devices' poll interval; lifeOffline the fix-forward's
	// offlineAfter.
	lifePoll    = "500ms"
	lifeOffline = 15 * time.Second
)

// TestFleetLife takes one fleet through four releases, as it lives in the
// field:
//
//   - 2.0.0 (securityVersion 1): the devices start on it, floor 1.
//   - 2.1.0 (securityVersion 2): canary of 4, then everyone; Succeeded, and
//     only then do the devices commit floor 2 (the server answers their next
//     check-in with "commit"). An edit of the Ready release's version is
//     refused by the apiserver.
//   - 2.2.0 (securityVersion 3): fails to install on about 40% of the
//     devices (fleetsim --install-failure); the failure threshold aborts it
//     and the devices that took it are rolled back to 2.1.0 — allowed
//     across the securityVersion bump because 2.2.0 never committed.
//   - 2.2.1 (securityVersion 3), the fix-forward: 5 devices (10%) went
//     offline before it opened and 5 new devices enrolled already running
//     2.2.1. The offline ones leave the success denominator after
//     offlineAfter (15s), without which the rollout could not reach 95%
//     (45 of 50 devices online); the new
//     ones count as current (succeeded, not offered) and are never offered
//     2.1.0 or a rollback. It succeeds, and every online device commits
//     floor 3.
//
// It asserts each device's final version and floor, the counts in status
// that do not depend on timing, the phases, the WaveCompleted events'
// numbers, and the OTA server's records of the late devices.
func TestFleetLife(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := stack.CP.Client
	if err := stack.CreateNamespace(ctx, lifeNS); err != nil {
		t.Fatal(err)
	}
	publish(ctx, t, lifeRelease{"fw-2.0.0", "2.0.0", 1}, lifeRelease{"fw-2.1.0", "2.1.0", 2})

	t.Run("release identity is immutable", func(t *testing.T) {
		key := client.ObjectKey{Namespace: lifeNS, Name: "fw-2.1.0"}
		for field, mutate := range map[string]func(*otav1.FirmwareRelease){
			"version":         func(r *otav1.FirmwareRelease) { r.Spec.Version = "2.1.1" },
			"securityVersion": func(r *otav1.FirmwareRelease) { r.Spec.SecurityVersion = 1 },
		} {
			rel := &otav1.FirmwareRelease{}
			if err := c.Get(ctx, key, rel); err != nil {
				t.Fatal(err)
			}
			p := client.MergeFrom(rel.DeepCopy())
			mutate(rel)
			err := c.Patch(ctx, rel, p)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "create a new FirmwareRelease") {
				t.Fatalf("edit of %s of a Ready release: got %v, want Invalid saying to create a new FirmwareRelease", field, err)
			}
			t.Logf("edit of spec.%s refused: %v", field, err)
		}
		rel := &otav1.FirmwareRelease{}
		if err := c.Get(ctx, key, rel); err != nil {
			t.Fatal(err)
		}
		if rel.Spec.Version != "2.1.0" || rel.Spec.SecurityVersion != 2 || !meta.IsStatusConditionTrue(rel.Status.Conditions, otav1.ConditionReady) {
			t.Fatalf("release changed by a refused edit: %+v %v", rel.Spec, rel.Status.Conditions)
		}
	})

	start := func(name, prefix, version string, n int, floor int64, seed int64) *harness.Fleet {
		f, err := stack.StartFleet(harness.FleetOptions{
			Name: name, Devices: n, IDPrefix: prefix, Version: version, SecurityFloor: floor, Seed: seed,
			Labels: "ring=" + lifeRing + ":1", PollInterval: lifePoll, SummaryInterval: 250 * time.Millisecond,
			Failures: []string{"--install-failure=0.4@version=2.2.0"},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Stop(10 * time.Second) })
		return f
	}
	mainFleet := start("life-main", "life-", "2.0.0", lifeMain, 1, 11)
	away := start("life-away", "away-", "2.0.0", lifeAway, 1, 12)
	onRelease := func(fleets []*harness.Fleet, version string, floor int64, why string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for _, f := range fleets {
			s, err := f.WaitSummary(wctx, func(s *harness.FleetSummary) bool {
				return s.All(func(d harness.FleetDevice) bool {
					return d.Version == version && d.SecurityFloor == floor && d.PendingFloor == 0
				})
			})
			if err != nil {
				t.Fatalf("%s: want every device on %s with floor %d committed: %v", why, version, floor, err)
			}
			t.Logf("%s: %s", f.Name(), s.Brief())
		}
	}

	// 2.1.0: a plain success, exact counts, then the commit.
	const n21 = lifeMain + lifeAway
	ro21 := lifeRollout(ctx, t, "fw-2.1.0", n21, []otav1.Wave{
		{Name: "canary", Devices: intstr.FromInt32(4)},
		{Name: "all", Devices: intstr.FromString("100%")},
	}, nil)
	got := waitRollout(ctx, t, stack, ro21, 2*time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		return r.Status.Phase == otav1.RolloutSucceeded && harness.Totals(r).Succeeded == n21, nil
	})
	wantWaves(t, got, []otav1.WaveStatus{
		{Targeted: 4, Offered: 4, Succeeded: 4},
		{Targeted: n21 - 4, Offered: n21 - 4, Succeeded: n21 - 4},
	})
	wantFleet(t, got, n21, fmt.Sprintf("%d/%d", n21, n21))
	// Committed after Succeeded, at the devices' next check-ins.
	onRelease([]*harness.Fleet{mainFleet, away}, "2.1.0", 2, "2.1.0 Succeeded")

	// 2.2.0: fails on a share of the devices, aborts, rolls back.
	publish(ctx, t, lifeRelease{"fw-2.2.0", "2.2.0", 3})
	ro22 := lifeRollout(ctx, t, "fw-2.2.0", n21, []otav1.Wave{{Name: "all", Devices: intstr.FromString("100%")}}, nil)
	got = waitRollout(ctx, t, stack, ro22, 2*time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutSucceeded {
			return false, fmt.Errorf("the failing release succeeded")
		}
		tot := harness.Totals(r)
		// Rolled back: nobody runs, installs or awaits a rollback of 2.2.0.
		return r.Status.Phase == otav1.RolloutAborted && tot.Succeeded == 0 && tot.InProgress == 0, nil
	})
	tot22 := harness.Totals(got)
	t.Logf("2.2.0 aborted: %s; totals %s", got.Status.AbortReason, countsString(tot22))
	if !strings.HasPrefix(got.Status.AbortReason, "FailureThreshold") || !got.Status.RollbackRequested {
		t.Errorf("aborted for %q with rollbackRequested %v; want the failure threshold and a rollback", got.Status.AbortReason, got.Status.RollbackRequested)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Aborted" {
		t.Errorf("Stalled condition %+v, want True Aborted", c)
	}
	// Which devices fail is fixed (fleetsim's seed); how many were offered
	// before the abort took effect, and which were canceled rather than
	// failed or rolled back, is timing. Every offer ended in one of those.
	if tot22.Targeted != n21 || tot22.Failed < 3 || tot22.RolledBack < 1 || tot22.Offered > n21 ||
		tot22.Offered != tot22.Failed+tot22.Canceled+tot22.RolledBack ||
		tot22.TimedOut != 0 || tot22.RollbackFailed != 0 || tot22.Skipped != 0 || tot22.Offline != 0 {
		t.Errorf("2.2.0 totals %s; want %d targeted, at least 3 failed and 1 rolled back, every offer failed, canceled or rolled back", countsString(tot22), n21)
	}
	if len(got.Status.RecentFailures) == 0 || !strings.Contains(got.Status.RecentFailures[0].Reason, "simulated flash write error") {
		t.Errorf("recent failures %+v, want the simulated install failures", got.Status.RecentFailures)
	}
	// 2.2.0 never committed, so its securityVersion 3 never became a
	// floor: that is what let the rollback to 2.1.0 (securityVersion 2)
	// happen.
	onRelease([]*harness.Fleet{mainFleet, away}, "2.1.0", 2, "2.2.0 rolled back")

	// 10% of the fleet goes offline before the fix-forward opens.
	if err := away.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	awaySum, err := away.Summary()
	if err != nil {
		t.Fatal(err)
	}

	// 2.2.1: the fix-forward. New devices enroll already running it.
	publish(ctx, t, lifeRelease{"fw-2.2.1", "2.2.1", 3})
	late := start("life-late", "late-", "2.2.1", lifeLate, 2, 13)
	const n221 = lifeMain + lifeAway + lifeLate
	ro221 := lifeRollout(ctx, t, "fw-2.2.1", n221, []otav1.Wave{
		{Name: "canary", Devices: intstr.FromInt32(5)},
		{Name: "all", Devices: intstr.FromString("100%")},
	}, func(r *otav1.Rollout) { r.Spec.OfflineAfter = &metav1.Duration{Duration: lifeOffline} })
	got = waitRollout(ctx, t, stack, ro221, 2*time.Minute, func(r *otav1.Rollout) (bool, error) {
		if r.Status.Phase == otav1.RolloutAborted {
			return false, fmt.Errorf("aborted: %s", r.Status.AbortReason)
		}
		tot := harness.Totals(r)
		return r.Status.Phase == otav1.RolloutSucceeded && tot.Succeeded == lifeMain+lifeLate && tot.Offline == lifeAway, nil
	})
	// The late devices were current (succeeded, never offered); the
	// offline ones left the denominator. Which wave each falls in is the
	// rollout's random ranking; the totals are fixed.
	if tot := harness.Totals(got); tot != (otav1.WaveStatus{Targeted: n221, Offered: lifeMain, Succeeded: lifeMain + lifeLate, Offline: lifeAway}) {
		t.Errorf("2.2.1 totals %s; want %d targeted, %d offered, %d succeeded, %d offline", countsString(tot), n221, lifeMain, lifeMain+lifeLate, lifeAway)
	}
	for i, w := range got.Status.Waves {
		if w.Succeeded+w.Offline != w.Targeted || w.Targeted != []int64{5, n221 - 5}[i] || w.CompletedAt == nil {
			t.Errorf("2.2.1 wave %s: %s, completed %v; want %d targeted, each succeeded or offline", w.Name, countsString(w), w.CompletedAt, []int64{5, n221 - 5}[i])
		}
	}
	wantFleet(t, got, n221, fmt.Sprintf("%d/%d", lifeMain+lifeLate, n221))
	checkWaveCompletedEvents(ctx, t, got)
	// Every online device commits floor 3: the main fleet through the
	// update, the late devices (floor 2 on 2.2.1) as current devices.
	onRelease([]*harness.Fleet{mainFleet, late}, "2.2.1", 3, "2.2.1 Succeeded")

	// The earlier rollouts were not disturbed by the late devices: their
	// fleets froze when they finished (Snapshot success, abort).
	for _, key := range []client.ObjectKey{ro21, ro22} {
		r := &otav1.Rollout{}
		if err := c.Get(ctx, key, r); err != nil {
			t.Fatal(err)
		}
		tot := harness.Totals(r)
		t.Logf("%s at the end: %s %s; fleet size %d", key.Name, r.Status.Phase, countsString(tot), r.Status.Fleet.Size)
		switch key {
		case ro21:
			if r.Status.Phase != otav1.RolloutSucceeded || tot.Targeted != n21 || r.Status.Fleet.Size != n21 || tot.Offered != n21 || tot.Succeeded != n21 || tot.Skipped != 0 {
				t.Errorf("2.1.0 at the end: %s %s; want Succeeded with the %d original devices only", r.Status.Phase, countsString(tot), n21)
			}
		case ro22:
			if r.Status.Phase != otav1.RolloutAborted || !r.Status.RollbackRequested || tot != tot22 {
				t.Errorf("2.2.0 at the end: %s %s; want Aborted with rollback, counts as at the rollback %s", r.Status.Phase, countsString(tot), countsString(tot22))
			}
		}
	}
	checkLateRecords(ctx, t, map[string]client.ObjectKey{"2.1.0": ro21, "2.2.0": ro22, "2.2.1": ro221})

	// Every device's final version and floor.
	for _, f := range []*harness.Fleet{mainFleet, late} {
		if err := f.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	want := func(s *harness.FleetSummary, err error, who string, n int, version string, floor int64, check func(harness.FleetDevice) string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if s.Devices != n || s.ByVersion[version] != n {
			t.Errorf("%s: %s; want all %d on %s", who, s.Brief(), n, version)
		}
		for _, d := range s.DevicesDetail {
			bad := ""
			if d.Version != version || d.SecurityFloor != floor || d.PendingFloor != 0 {
				bad = fmt.Sprintf("want %s floor %d", version, floor)
			} else if check != nil {
				bad = check(d)
			}
			if bad != "" {
				t.Errorf("%s device %s: version %s floor %d (pending %d) state %s %q reports %d: %s",
					who, d.ID, d.Version, d.SecurityFloor, d.PendingFloor, d.LastState, d.LastReason, d.Reports, bad)
			}
		}
	}
	s, err := mainFleet.Summary()
	want(s, err, "main", lifeMain, "2.2.1", 3, nil)
	want(awaySum, nil, "offline", lifeAway, "2.1.0", 2, nil)
	s, err = late.Summary()
	want(s, err, "late", lifeLate, "2.2.1", 3, func(d harness.FleetDevice) string {
		// Never offered anything: no install, no rollback, no report.
		if d.LastState != "idle" || d.Reports != 0 || d.PendingReports != 0 {
			return "want a device that never installed anything"
		}
		return ""
	})
	if s != nil && len(s.Refusals) != 0 {
		t.Errorf("late devices refused %v", s.Refusals)
	}
}

type lifeRelease struct {
	name, version   string
	securityVersion int64
}

// publish publishes releases and waits until they are Ready.
func publish(ctx context.Context, t *testing.T, rels ...lifeRelease) {
	t.Helper()
	for _, r := range rels {
		if _, err := stack.PublishRelease(ctx, lifeNS, r.name, r.version, r.securityVersion, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, r := range rels {
		if _, err := harness.WaitReleaseReady(wctx, stack.CP.Client, client.ObjectKey{Namespace: lifeNS, Name: r.name}); err != nil {
			t.Fatal(err)
		}
	}
}

// lifeRollout creates a paused rollout of release to the life ring and
// resumes it once its fleet has size devices.
func lifeRollout(ctx context.Context, t *testing.T, release string, size int64, waves []otav1.Wave, mutate func(*otav1.Rollout)) client.ObjectKey {
	t.Helper()
	return startRollout(ctx, t, stack, time.Minute, lifeNS, release+"-"+lifeRing, release, lifeRing, size, func(r *otav1.Rollout) {
		r.Spec.Waves = waves
		if mutate != nil {
			mutate(r)
		}
	})
}

// startRollout is s.StartRingRollout within timeout: a paused rollout of
// release to the devices labelled ring=<ring>, resumed once its fleet has
// n devices. It fails the test when that does not happen.
func startRollout(ctx context.Context, t *testing.T, s *harness.Stack, timeout time.Duration, ns, name, release, ring string, n int64, mutate func(*otav1.Rollout)) client.ObjectKey {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key, err := s.StartRingRollout(wctx, ns, name, release, ring, n, mutate)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// waitRollout waits up to timeout until done says the rollout of s is
// where it should be, logging each change of it; it fails the test when
// done fails or time runs out.
func waitRollout(ctx context.Context, t *testing.T, s *harness.Stack, key client.ObjectKey, timeout time.Duration, done func(*otav1.Rollout) (bool, error)) *otav1.Rollout {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ro, err := harness.WaitRollout(wctx, s.CP.Client, key, func(r *otav1.Rollout) {
		t.Logf("%s  %s", key.Name, harness.RolloutLine(r))
	}, done)
	if err != nil {
		t.Fatalf("%s: %v", key.Name, err)
	}
	return ro
}

// counters is a wave's device counters without its name and times.
func counters(w otav1.WaveStatus) otav1.WaveStatus {
	w.Name, w.StartedAt, w.CompletedAt = "", nil, nil
	return w
}

func countsString(w otav1.WaveStatus) string {
	return fmt.Sprintf("%+v", counters(w))
}

func wantWaves(t *testing.T, ro *otav1.Rollout, want []otav1.WaveStatus) {
	t.Helper()
	if len(ro.Status.Waves) != len(want) {
		t.Fatalf("%s: waves %+v, want %d", ro.Name, ro.Status.Waves, len(want))
	}
	for i, w := range ro.Status.Waves {
		if counters(w) != want[i] || w.StartedAt == nil || w.CompletedAt == nil {
			t.Errorf("%s wave %s: %s (started %v, completed %v), want %s", ro.Name, w.Name, countsString(w), w.StartedAt, w.CompletedAt, countsString(want[i]))
		}
	}
}

func wantFleet(t *testing.T, ro *otav1.Rollout, size int64, progress string) {
	t.Helper()
	f := ro.Status.Fleet
	if f == nil || f.Size != size || f.Conflicts != 0 || len(f.Skipped) != 0 || ro.Status.Progress != progress {
		t.Errorf("%s: fleet %+v progress %q; want %d devices, no conflicts or skips, progress %s", ro.Name, f, ro.Status.Progress, size, progress)
	}
	if c := meta.FindStatusCondition(ro.Status.Conditions, otav1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "Succeeded" {
		t.Errorf("%s: Ready %+v, want True Succeeded", ro.Name, c)
	}
}

var waveCompleted = regexp.MustCompile(`^wave (\d+)/(\d+) (\S+) completed: (\d+) of (\d+) reachable devices succeeded \(threshold [^;]+; (\d+) offline, (\d+) skipped\)$`)

// checkWaveCompletedEvents: one WaveCompleted event per wave, carrying the
// numbers the wave completed on. The offline devices stop being seen a
// fraction of a second apart, so a wave completes as soon as enough of them
// count as offline, not necessarily all: the event's offline count is at
// most the wave's final one. A wave whose online devices are fewer than 95%
// of it could only complete by leaving offline devices out of the
// denominator, and with 10% of the fleet away at least one wave is such.
func checkWaveCompletedEvents(ctx context.Context, t *testing.T, ro *otav1.Rollout) {
	t.Helper()
	var list eventsv1.EventList
	if err := stack.CP.Client.List(ctx, &list, client.InNamespace(ro.Namespace)); err != nil {
		t.Fatal(err)
	}
	type completed struct{ succeeded, reachable, offline, skipped int64 }
	byWave := map[string]completed{}
	for _, e := range list.Items {
		if e.Regarding.Kind != "Rollout" || e.Regarding.Name != ro.Name || e.Reason != "WaveCompleted" {
			continue
		}
		t.Logf("event %s: %s", e.Reason, e.Note)
		m := waveCompleted.FindStringSubmatch(e.Note)
		if m == nil {
			t.Errorf("WaveCompleted event %q does not carry the numbers", e.Note)
			continue
		}
		if _, dup := byWave[m[3]]; dup {
			t.Errorf("wave %s completed twice", m[3])
		}
		var n [4]int64
		for i, s := range m[4:] {
			n[i], _ = strconv.ParseInt(s, 10, 64)
		}
		byWave[m[3]] = completed{n[0], n[1], n[2], n[3]}
	}
	byRule := 0
	for _, w := range ro.Status.Waves {
		e, ok := byWave[w.Name]
		if !ok {
			t.Errorf("no WaveCompleted event for wave %s", w.Name)
			continue
		}
		online := w.Targeted - w.Offline
		if e.reachable+e.offline != w.Targeted || e.skipped != 0 || e.offline > w.Offline ||
			e.succeeded < need95(e.reachable) || e.succeeded > online {
			t.Errorf("wave %s completed with %d of %d reachable devices, %d offline, %d skipped; status says %s",
				w.Name, e.succeeded, e.reachable, e.offline, e.skipped, countsString(w))
		}
		if online < need95(w.Targeted) {
			byRule++
			if e.offline == 0 {
				t.Errorf("wave %s: %d of %d devices online, fewer than 95%%, yet it completed with no device offline", w.Name, online, w.Targeted)
			}
		}
	}
	if byRule == 0 {
		t.Errorf("no wave needed the offline rule to complete: %+v", ro.Status.Waves)
	}
}

// need95 is how many of n devices a 95% threshold needs.
func need95(n int64) int64 { return (95*n + 99) / 100 }

// checkLateRecords reads the OTA server's store: the late devices have a
// "current" record in the fix-forward and none in the rollouts before it
// (2.1.0 succeeded before they enrolled; 2.2.0 was aborted), so they were
// never offered an older release nor rolled back.
func checkLateRecords(ctx context.Context, t *testing.T, rollouts map[string]client.ObjectKey) {
	t.Helper()
	version := map[string]string{} // rollout UID → release version
	for v, key := range rollouts {
		r := &otav1.Rollout{}
		if err := stack.CP.Client.Get(ctx, key, r); err != nil {
			t.Fatal(err)
		}
		version[string(r.UID)] = v
	}
	db, err := stack.OpenStoreReadOnly()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT rollout_uid, device_id, state, reason FROM records WHERE device_id >= 'late-' AND device_id < 'late.' ORDER BY device_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	current := 0
	for rows.Next() {
		var uid, id, state, reason string
		if err := rows.Scan(&uid, &id, &state, &reason); err != nil {
			t.Fatal(err)
		}
		v, ours := version[uid]
		switch {
		case !ours:
			t.Errorf("late device %s has a record in another rollout (%s): %s %q", id, uid, state, reason)
		case v == "2.2.1" && state == "current":
			current++
		default:
			t.Errorf("late device %s has a record in the %s rollout: %s %q; want only a current record in 2.2.1", id, v, state, reason)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if current != lifeLate {
		t.Errorf("%d late devices recorded current in 2.2.1, want %d", current, lifeLate)
	}
}
