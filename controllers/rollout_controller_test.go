package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/config/argocd"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/testenv/releasetest"
)

// counts are what the OTA server reports for one wave.
type counts struct{ targeted, offered, inProgress, succeeded, failed, timedOut int64 }

// serverReport applies the OTA server's status fields the way the server
// does: server-side apply under its own field manager.
func serverReport(t *testing.T, ro *otav1.Rollout, observedWave int32, fleet int64, waves map[string]counts) {
	t.Helper()
	fields := map[string]map[string]int64{}
	for name, c := range waves {
		fields[name] = map[string]int64{
			"targeted": c.targeted, "offered": c.offered, "inProgress": c.inProgress,
			"succeeded": c.succeeded, "failed": c.failed, "timedOut": c.timedOut,
		}
	}
	serverReportFields(t, ro, observedWave, fleet, time.Now(), fields)
}

// readyRelease creates a FirmwareRelease and waits until it is Ready.
func readyRelease(t *testing.T, ns, name string) {
	t.Helper()
	key := releasetest.NewECDSAKey(t)
	img := randomImage(t, 5_000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": key.PEM})
	rel := release(ns, name, images.Put("/"+ns+"/"+name+".bin", img), img, key.Sign(t, img))
	create(t, rel)
	waitCondition(t, client.ObjectKeyFromObject(rel), otav1.ConditionReady, metav1.ConditionTrue, otav1.ReasonArtifactReady)
}

func newRollout(ns, release string, waves ...otav1.Wave) *otav1.Rollout {
	return &otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ship-" + release},
		Spec: otav1.RolloutSpec{
			ReleaseRef:       otav1.ReleaseReference{Name: release},
			Waves:            waves,
			SuccessThreshold: "90%",
			FailureThreshold: "20%",
			MinFailures:      3,
		},
	}
}

func manualGate() *otav1.WavePause { return &otav1.WavePause{} }
func timedPause(d time.Duration) *otav1.WavePause {
	return &otav1.WavePause{Duration: &metav1.Duration{Duration: d}}
}

// waitRollout waits until check passes on the rollout.
func waitRollout(t *testing.T, ro *otav1.Rollout, what string, check func(*otav1.Rollout) bool) *otav1.Rollout {
	t.Helper()
	got := &otav1.Rollout{}
	releasetest.Eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), got); err != nil {
			return err
		}
		if !check(got) {
			b, _ := json.Marshal(got.Status)
			return fmt.Errorf("rollout not %s: status %s", what, b)
		}
		return nil
	})
	return got
}

func phaseIs(p otav1.RolloutPhase, wave int32, readyReason string) func(*otav1.Rollout) bool {
	return func(ro *otav1.Rollout) bool {
		c := meta.FindStatusCondition(ro.Status.Conditions, otav1.ConditionReady)
		return ro.Status.Phase == p && ro.Status.CurrentWave == wave && c != nil && c.Reason == readyReason &&
			ro.Status.ObservedGeneration == ro.Generation
	}
}

// kstatusOf computes the kstatus (Flux) status of an object, and checks that
// the Argo CD health check agrees with it.
func kstatusOf(t *testing.T, obj runtime.Object) status.Status {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: m})
	if err != nil {
		t.Fatal(err)
	}
	script, wantArgo := argocd.FirmwareReleaseHealth, map[status.Status]string{
		status.CurrentStatus: "Healthy", status.FailedStatus: "Degraded", status.InProgressStatus: "Progressing",
	}[res.Status]
	if ro, ok := obj.(*otav1.Rollout); ok {
		script = argocd.RolloutHealth
		wantArgo = map[otav1.RolloutPhase]string{
			otav1.RolloutPending: "Progressing", otav1.RolloutProgressing: "Progressing", otav1.RolloutPaused: "Suspended",
			otav1.RolloutSucceeded: "Healthy", otav1.RolloutAborted: "Degraded",
		}[ro.Status.Phase]
	}
	argo, msg, err := argocd.Evaluate(script, m)
	if err != nil {
		t.Fatal(err)
	}
	if argo != wantArgo || msg == "" {
		t.Errorf("Argo CD health = %s %q, want %s with a message (kstatus %s)", argo, msg, wantArgo, res.Status)
	}
	return res.Status
}

func patchSpec(t *testing.T, ro *otav1.Rollout, mutate func(*otav1.Rollout)) {
	t.Helper()
	cur := &otav1.Rollout{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(ro), cur); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cur.DeepCopy())
	mutate(cur)
	if err := k8s.Patch(context.Background(), cur, patch); err != nil {
		t.Fatal(err)
	}
	*ro = *cur
}

// TestRolloutHappyPath walks canary → manual gate → approval → timed pause
// that resumes by itself → last wave → Succeeded.
func TestRolloutHappyPath(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw",
		otav1.Wave{Name: "canary", Devices: intstr.FromInt32(2), Pause: manualGate()},
		otav1.Wave{Name: "early", Devices: intstr.FromString("50%"), Pause: timedPause(2 * time.Second)},
		otav1.Wave{Name: "all", Devices: intstr.FromString("100%")},
	)
	create(t, ro)

	got := waitRollout(t, ro, "progressing in canary", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))
	if got.Status.Waves[0].StartedAt == nil || !meta.IsStatusConditionTrue(got.Status.Conditions, otav1.ConditionReconciling) {
		t.Fatalf("canary not started or not reconciling: %+v", got.Status)
	}
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus of a progressing rollout = %s, want InProgress", s)
	}
	waitEvent(t, ro, corev1.EventTypeNormal, "WaveOpened")

	// 1 of 2 canaries done: 90% of 2 needs 2.
	serverReport(t, ro, 0, 10, map[string]counts{"canary": {2, 2, 1, 1, 0, 0}})
	time.Sleep(500 * time.Millisecond)
	waitRollout(t, ro, "still in canary", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))

	serverReport(t, ro, 0, 10, map[string]counts{"canary": {2, 2, 0, 2, 0, 0}})
	got = waitRollout(t, ro, "waiting for approval", phaseIs(otav1.RolloutPaused, 0, "AwaitingApproval"))
	if got.Status.Waves[0].CompletedAt == nil {
		t.Error("canary completedAt not set")
	}
	if got.Status.Waves[0].Succeeded != 2 || got.Status.Fleet == nil || got.Status.Fleet.Size != 10 {
		t.Errorf("server-owned counters lost after the controller wrote status: %+v fleet %+v", got.Status.Waves[0], got.Status.Fleet)
	}
	// Not done yet: Ready is False, so kstatus says InProgress (Argo CD's
	// health check says Suspended).
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus of a rollout waiting at a manual gate = %s, want InProgress", s)
	}
	waitEvent(t, ro, corev1.EventTypeNormal, "WaveCompleted")

	patchSpec(t, ro, func(r *otav1.Rollout) { r.Spec.ApprovedWave = "canary" })
	waitRollout(t, ro, "progressing in early", phaseIs(otav1.RolloutProgressing, 1, "WaveProgressing"))
	waitEvent(t, ro, corev1.EventTypeNormal, "WaveApproved")

	serverReport(t, ro, 1, 10, map[string]counts{"canary": {2, 2, 0, 2, 0, 0}, "early": {3, 3, 0, 3, 0, 0}})
	got = waitRollout(t, ro, "in a timed pause", phaseIs(otav1.RolloutPaused, 1, "TimedPause"))
	if got.Status.PausedUntil == nil {
		t.Fatal("pausedUntil not set during a timed pause")
	}
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus during a timed pause = %s, want InProgress (it resumes by itself)", s)
	}
	// The pause ends by itself (requeue at the deadline, no spec change).
	got = waitRollout(t, ro, "progressing in all", phaseIs(otav1.RolloutProgressing, 2, "WaveProgressing"))
	if got.Status.PausedUntil != nil {
		t.Error("pausedUntil left after the pause ended")
	}
	waitEvent(t, ro, corev1.EventTypeNormal, "Resumed")

	serverReport(t, ro, 2, 10, map[string]counts{"canary": {2, 2, 0, 2, 0, 0}, "early": {3, 3, 0, 3, 0, 0}, "all": {5, 5, 0, 5, 0, 0}})
	got = waitRollout(t, ro, "succeeded", phaseIs(otav1.RolloutSucceeded, 2, "Succeeded"))
	if !meta.IsStatusConditionTrue(got.Status.Conditions, otav1.ConditionReady) {
		t.Error("Ready not True on a succeeded rollout")
	}
	for _, typ := range []string{otav1.ConditionReconciling, otav1.ConditionStalled} {
		if meta.FindStatusCondition(got.Status.Conditions, typ) != nil {
			t.Errorf("%s present on a succeeded rollout", typ)
		}
	}
	if got.Status.WaveSummary != "3/3 all" || got.Status.Progress != "10/10" {
		t.Errorf("waveSummary %q progress %q", got.Status.WaveSummary, got.Status.Progress)
	}
	if s := kstatusOf(t, got); s != status.CurrentStatus {
		t.Errorf("kstatus of a succeeded rollout = %s, want Current", s)
	}
	waitEvent(t, ro, corev1.EventTypeNormal, "Succeeded")

	// Metrics see it.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(controllers.NewRolloutCollector(k8s))
	if v := gaugeValue(t, reg, "otaflow_rollout_devices", map[string]string{"namespace": ns, "rollout": ro.Name, "state": "succeeded"}); v != 10 {
		t.Errorf("otaflow_rollout_devices{state=succeeded} = %v, want 10", v)
	}
	if v := gaugeValue(t, reg, "otaflow_rollout_current_wave", map[string]string{"namespace": ns, "rollout": ro.Name}); v != 2 {
		t.Errorf("otaflow_rollout_current_wave = %v, want 2", v)
	}
	if v := gaugeValue(t, reg, "otaflow_rollouts", map[string]string{"phase": "Succeeded"}); v < 1 {
		t.Errorf("otaflow_rollouts{phase=Succeeded} = %v, want at least 1", v)
	}
}

// gaugeValue finds one series of a gauge; -1 when it is missing.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestRolloutFailureThresholdAborts(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw",
		otav1.Wave{Name: "canary", Devices: intstr.FromInt32(10)},
		otav1.Wave{Name: "all", Devices: intstr.FromString("100%")},
	)
	create(t, ro)
	waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))

	serverReport(t, ro, 0, 50, map[string]counts{"canary": {10, 10, 4, 3, 3, 0}}) // 3 of 10 = 30% > 20%
	got := waitRollout(t, ro, "aborted", phaseIs(otav1.RolloutAborted, 0, "Aborted"))
	if !got.Status.RollbackRequested {
		t.Error("rollback not requested (rollbackOnAbort defaults to true)")
	}
	if !strings.Contains(got.Status.AbortReason, "3 of 10 offered devices failed") {
		t.Errorf("abortReason %q does not give the numbers", got.Status.AbortReason)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v, want True", c)
	}
	if s := kstatusOf(t, got); s != status.FailedStatus {
		t.Errorf("kstatus of an aborted rollout = %s, want Failed", s)
	}
	e := waitEvent(t, ro, corev1.EventTypeWarning, "Aborted")
	if !strings.Contains(e.Note, "3 of 10") {
		t.Errorf("abort event %q does not give the numbers", e.Note)
	}

	// Aborted is final: later reports do not revive it.
	serverReport(t, ro, 0, 50, map[string]counts{"canary": {10, 10, 0, 10, 0, 0}})
	time.Sleep(500 * time.Millisecond)
	waitRollout(t, ro, "still aborted", phaseIs(otav1.RolloutAborted, 0, "Aborted"))
}

func TestRolloutPauseFreezesAndResumes(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw",
		otav1.Wave{Name: "canary", Devices: intstr.FromInt32(2)},
		otav1.Wave{Name: "all", Devices: intstr.FromString("100%")},
	)
	create(t, ro)
	waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))

	patchSpec(t, ro, func(r *otav1.Rollout) { r.Spec.Paused = true })
	got := waitRollout(t, ro, "paused", phaseIs(otav1.RolloutPaused, 0, "PausedBySpec"))
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus of a paused rollout = %s, want InProgress", s)
	}
	// The canary completes while paused: nothing moves.
	serverReport(t, ro, 0, 4, map[string]counts{"canary": {2, 2, 0, 2, 0, 0}})
	time.Sleep(time.Second)
	waitRollout(t, ro, "still paused in canary", phaseIs(otav1.RolloutPaused, 0, "PausedBySpec"))

	patchSpec(t, ro, func(r *otav1.Rollout) { r.Spec.Paused = false })
	waitRollout(t, ro, "resumed into the next wave", phaseIs(otav1.RolloutProgressing, 1, "WaveProgressing"))
	waitEvent(t, ro, corev1.EventTypeNormal, "Resumed")
}

func TestRolloutSpecAbort(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw", otav1.Wave{Name: "all", Devices: intstr.FromString("100%")})
	ro.Spec.RollbackOnAbort = ptr.To(false)
	create(t, ro)
	waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))
	patchSpec(t, ro, func(r *otav1.Rollout) { r.Spec.Abort = true })
	got := waitRollout(t, ro, "aborted", phaseIs(otav1.RolloutAborted, 0, "Aborted"))
	if got.Status.RollbackRequested {
		t.Error("rollback requested although rollbackOnAbort is false")
	}
	if !strings.Contains(got.Status.AbortReason, "spec.abort") {
		t.Errorf("abortReason %q", got.Status.AbortReason)
	}
}

func TestRolloutWaitsForRelease(t *testing.T) {
	ns := newNamespace(t)
	ro := newRollout(ns, "later", otav1.Wave{Name: "all", Devices: intstr.FromString("100%")})
	create(t, ro)
	got := waitRollout(t, ro, "pending", phaseIs(otav1.RolloutPending, 0, "WaitingForRelease"))
	c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady)
	if !strings.Contains(c.Message, "FirmwareRelease later not found") {
		t.Errorf("Ready message %q does not say what is missing", c.Message)
	}
	if got.Status.Waves[0].StartedAt != nil {
		t.Error("a wave opened without a Ready release")
	}
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus of a pending rollout = %s, want InProgress", s)
	}
	waitEvent(t, ro, corev1.EventTypeNormal, "WaitingForRelease")

	readyRelease(t, ns, "later") // the release watch brings the rollout back
	waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))
}

func TestRolloutStalledRelease(t *testing.T) {
	ns := newNamespace(t)
	key := releasetest.NewECDSAKey(t)
	img := randomImage(t, 1000)
	createKeySecret(t, ns, "vendor-keys", map[string][]byte{"cosign.pub": key.PEM})
	rel := release(ns, "bad", images.Put("/"+ns+"/bad.bin", img), img, key.Sign(t, img))
	rel.Spec.Source.SHA256 = digest([]byte("not it"))
	create(t, rel)
	ro := newRollout(ns, "bad", otav1.Wave{Name: "all", Devices: intstr.FromString("100%")})
	create(t, ro)
	got := waitRollout(t, ro, "stalled on its release", func(r *otav1.Rollout) bool {
		return meta.IsStatusConditionTrue(r.Status.Conditions, otav1.ConditionStalled) && r.Status.Phase == otav1.RolloutPending
	})
	if s := kstatusOf(t, got); s != status.FailedStatus {
		t.Errorf("kstatus of a rollout whose release failed = %s, want Failed", s)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionReady); !strings.Contains(c.Message, "DigestMismatch") {
		t.Errorf("Ready message %q does not carry the release's reason", c.Message)
	}
}

func TestFirmwareReleaseKstatus(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "good")
	rel := &otav1.FirmwareRelease{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "good"}, rel); err != nil {
		t.Fatal(err)
	}
	if s := kstatusOf(t, rel); s != status.CurrentStatus {
		t.Errorf("kstatus of a Ready release = %s, want Current", s)
	}
	key := releasetest.NewECDSAKey(t)
	img := randomImage(t, 1000)
	bad := release(ns, "bad", images.Put("/"+ns+"/bad.bin", img), img, key.Sign(t, img))
	// An invalid trusted key stalls; a missing one does not (it is waited
	// for, Reconciling), so it cannot stand for a stalled release.
	createKeySecret(t, ns, "bad-keys", map[string][]byte{"cosign.pub": []byte("not a key")})
	bad.Spec.Signature.PublicKeys[0].SecretRef.Name = "bad-keys"
	create(t, bad)
	got := waitCondition(t, client.ObjectKeyFromObject(bad), otav1.ConditionStalled, metav1.ConditionTrue, otav1.ReasonKeyInvalid)
	if s := kstatusOf(t, got); s != status.FailedStatus {
		t.Errorf("kstatus of a stalled release = %s, want Failed", s)
	}
}

// serverReportFields applies the OTA server's wave counters given as API
// field names (offline, skipped, …), reported at the time given.
func serverReportFields(t *testing.T, ro *otav1.Rollout, observedWave int32, fleet int64, reportedAt time.Time, waves map[string]map[string]int64) {
	t.Helper()
	var ws []any
	for _, w := range ro.Spec.Waves {
		m := map[string]any{"name": w.Name}
		for k, v := range waves[w.Name] {
			m[k] = v
		}
		ws = append(ws, m)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ota.otaflow.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": ro.Name, "namespace": ro.Namespace},
		"status": map[string]any{
			"fleet": map[string]any{"size": fleet, "observedWave": int64(observedWave), "reportedAt": reportedAt.UTC().Format(time.RFC3339)},
			"waves": ws,
		},
	}}
	if err := k8s.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("otaflow-otaserver"), client.ForceOwnership); err != nil {
		t.Fatalf("server report: %v", err)
	}
}

// TestRolloutOfflineAndCannotSucceed: offline devices leave the success
// denominator; a wave that can no longer succeed is Stalled at once with
// the numbers (kstatus Failed), and recovers when the numbers change.
func TestRolloutOfflineAndCannotSucceed(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw",
		otav1.Wave{Name: "canary", Devices: intstr.FromInt32(10), Pause: manualGate()},
		otav1.Wave{Name: "all", Devices: intstr.FromString("100%")},
	)
	create(t, ro)
	waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))

	// 90% of 10 needs 9: 8 succeeded and 1 failed (below minFailures 3)
	// leaves at most 9 with the last device, which is offline — so it
	// cannot succeed, at once.
	serverReportFields(t, ro, 0, 10, time.Now(), map[string]map[string]int64{"canary": {"targeted": 10, "offered": 9, "succeeded": 8, "failed": 1, "offline": 1}})
	got := waitRollout(t, ro, "cannot succeed", phaseIs(otav1.RolloutProgressing, 0, "WaveCannotSucceed"))
	c := meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "at most 8 of 9 reachable devices can still succeed") {
		t.Fatalf("Stalled = %+v, want the numbers", c)
	}
	if s := kstatusOf(t, got); s != status.FailedStatus {
		t.Errorf("kstatus of a wave that cannot succeed = %s, want Failed", s)
	}
	waitEvent(t, ro, corev1.EventTypeWarning, "WaveCannotSucceed")

	// A human lowers the threshold: 80% of the 9 reachable needs 8.
	patchSpec(t, ro, func(r *otav1.Rollout) { r.Spec.SuccessThreshold = "80%" })
	got = waitRollout(t, ro, "canary complete", phaseIs(otav1.RolloutPaused, 0, "AwaitingApproval"))
	if meta.FindStatusCondition(got.Status.Conditions, otav1.ConditionStalled) != nil {
		t.Error("Stalled not cleared once the wave completed")
	}
	e := waitEvent(t, ro, corev1.EventTypeNormal, "WaveCompleted")
	if !strings.Contains(e.Note, "8 of 9 reachable devices succeeded") || !strings.Contains(e.Note, "1 offline") {
		t.Errorf("completion event %q does not give the offline numbers", e.Note)
	}
}

// TestRolloutStaleCounts: counts the OTA server reported longer ago than
// --counts-stale-after neither complete nor abort a wave; the condition
// says so, and fresh counts move the rollout on.
func TestRolloutStaleCounts(t *testing.T) {
	ns := newNamespace(t)
	readyRelease(t, ns, "fw")
	ro := newRollout(ns, "fw",
		otav1.Wave{Name: "canary", Devices: intstr.FromInt32(2), Pause: manualGate()},
		otav1.Wave{Name: "all", Devices: intstr.FromString("100%")},
	)
	create(t, ro)
	got := waitRollout(t, ro, "progressing", phaseIs(otav1.RolloutProgressing, 0, "WaveProgressing"))
	started := got.Status.Waves[0].StartedAt.Time

	// Counts that would complete the canary, but from a server that last
	// reported long ago (still after the wave opened): wait until the wave
	// is older than the stale bound.
	time.Sleep(time.Until(started.Add(staleAfter + 2*time.Second)))
	old := started.Add(time.Second)
	serverReportFields(t, ro, 0, 10, old, map[string]map[string]int64{"canary": {"targeted": 2, "offered": 2, "succeeded": 2}})
	got = waitRollout(t, ro, "stale", phaseIs(otav1.RolloutProgressing, 0, "StaleCounts"))
	if got.Status.Waves[0].CompletedAt != nil {
		t.Fatal("a wave completed on stale counts")
	}
	if s := kstatusOf(t, got); s != status.InProgressStatus {
		t.Errorf("kstatus with stale counts = %s, want InProgress", s)
	}
	waitEvent(t, ro, corev1.EventTypeWarning, "StaleCounts")

	serverReportFields(t, ro, 0, 10, time.Now(), map[string]map[string]int64{"canary": {"targeted": 2, "offered": 2, "succeeded": 2}})
	waitRollout(t, ro, "canary complete", phaseIs(otav1.RolloutPaused, 0, "AwaitingApproval"))
}
