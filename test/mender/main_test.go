// Package mender runs the real mender-client (Debian's 3.4, sandboxed by
// internal/mendertest) against otaflow as it runs in a cluster — a real
// kube-apiserver and etcd, the manager and the OTA server (with --mender)
// as separate processes — alone and beside native devices, with artifacts
// written by the real mender-artifact, and asserts exact counts in Rollout
// status.
package mender

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	_ "modernc.org/sqlite" // the OTA server's store, read-only

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/menderkey"
	"github.com/otaflow/otaflow/internal/mendertest"
)

var stack *harness.Stack

func TestMain(m *testing.M) {
	os.Exit(harness.RunWithStack(m, "otaflow-mender-", harness.StackOptions{Tenants: true, Mender: true, ReportInterval: time.Second}, &stack))
}

// deviceType is the type of every device here, Mender or native.
const deviceType = "sensor-v1"

// tenant creates namespace ns with a DeviceEnrollment "factory" whose
// spec.mender registers sensor-v1 devices labelled region=eu (auto-accepted
// unless mutate says otherwise), and returns its token: the Mender tenant
// token, and what enrolls native devices.
func tenant(t *testing.T, ctx context.Context, ns string, mutate func(*otav1.MenderEnrollment)) string {
	t.Helper()
	if err := stack.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tok, err := stack.CreateDeviceEnrollmentWith(ctx, ns, "factory", func(e *otav1.DeviceEnrollment) {
		e.Spec.Mender = &otav1.MenderEnrollment{DeviceType: deviceType, AutoAccept: true, Labels: map[string]string{"region": "eu"}}
		if mutate != nil {
			mutate(e.Spec.Mender)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// releaseName is the name of the release of version in namespace ns.
// The download site is shared by every namespace, and a release's image
// is put there under the release's name.
func releaseName(ns, version string) string { return ns + "-sensor-" + version }

// publishMender writes an update-module artifact with mender-artifact and
// publishes it as the Mender-format release releaseName(ns, version) for
// sensor-v1, then waits until it is Ready.
func publishMender(t *testing.T, ctx context.Context, ns, version string, opts mendertest.ArtifactOptions) (*mendertest.Artifact, *otav1.FirmwareRelease) {
	t.Helper()
	art := mendertest.WriteArtifact(t, opts)
	name := releaseName(ns, version)
	if _, err := stack.PublishImage(ctx, ns, name, version, 1, art.Bytes, func(r *otav1.FirmwareRelease) {
		r.Spec.Format = otav1.FormatMender
		r.Spec.ArtifactFilename = name + ".mender"
		r.Spec.Compatibility.DeviceTypes = []string{deviceType}
	}); err != nil {
		t.Fatal(err)
	}
	rel, err := harness.WaitReleaseReady(ctx, stack.CP.Client, client.ObjectKey{Namespace: ns, Name: name})
	if err != nil {
		t.Fatalf("%v (manager log: %s)", err, stack.Manager.LogPath())
	}
	return art, rel
}

// factoryArtifact is the artifact the Mender devices run at first.
const factoryArtifact = "sensor-2.0.0"

// publishFactory publishes the image the devices shipped with, artifact
// factoryArtifact, as release 2.0.0: the devices then run a known release
// (the rollback target of an abort). Without it they run
// 0.0.0-unreleased+sensor-2.0.0, below every release (TestMixedFleet).
func publishFactory(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	publishMender(t, ctx, ns, "2.0.0", mendertest.ArtifactOptions{Name: factoryArtifact, DeviceTypes: []string{deviceType}})
}

// createRollout rolls release out to the namespace's region=eu devices in
// waves, paused: openWhen opens it once the fleet is complete (a rollout
// whose fleet is still empty would succeed at once).
func createRollout(t *testing.T, ctx context.Context, ns, name, release string, waves []string, mutate func(*otav1.Rollout)) client.ObjectKey {
	t.Helper()
	if _, err := stack.CreateRollout(ctx, ns, name, release, func(ro *otav1.Rollout) {
		ro.Spec.Waves = nil
		for i, w := range waves {
			ro.Spec.Waves = append(ro.Spec.Waves, otav1.Wave{Name: fmt.Sprintf("wave-%d", i+1), Devices: intstr.FromString(w)})
		}
		ro.Spec.MaxOffersPerMinute = nil
		ro.Spec.Paused = true
		if mutate != nil {
			mutate(ro)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKey{Namespace: ns, Name: name}
}

// openWhen unpauses the rollout once its fleet holds n devices.
func openWhen(t *testing.T, ctx context.Context, key client.ObjectKey, n int64) {
	t.Helper()
	if _, err := harness.WaitFleet(ctx, stack.CP.Client, key, n, 0); err != nil {
		t.Fatalf("%v (OTA server log: %s)", err, stack.OTAServer.LogPath())
	}
	patchRollout(t, ctx, key, func(ro *otav1.Rollout) { ro.Spec.Paused = false })
}

func patchRollout(t *testing.T, ctx context.Context, key client.ObjectKey, change func(*otav1.Rollout)) {
	t.Helper()
	if err := harness.PatchRollout(ctx, stack.CP.Client, key, change); err != nil {
		t.Fatal(err)
	}
}

// waitRollout waits until the rollout's status satisfies done, logging
// each change.
func waitRollout(t *testing.T, ctx context.Context, key client.ObjectKey, done func(*otav1.Rollout) bool) *otav1.Rollout {
	t.Helper()
	ro, err := harness.WaitRollout(ctx, stack.CP.Client, key,
		func(ro *otav1.Rollout) { t.Log(harness.RolloutLine(ro)) },
		func(ro *otav1.Rollout) (bool, error) { return done(ro), nil })
	if err != nil {
		t.Fatalf("%v (OTA server log: %s)", err, stack.OTAServer.LogPath())
	}
	return ro
}

// startClient runs a sandboxed mender-client against the OTA server; when
// the test fails, its log is printed.
func startClient(t *testing.T, opts mendertest.Options) *mendertest.Device {
	t.Helper()
	opts.ServerURL = stack.ServerURL
	opts.DeviceType = deviceType
	d := mendertest.Start(t, opts)
	// Registered after Start's cleanup, so it runs before the sandbox
	// is removed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mender-client %v log (%s):\n%s", d.Identity, d.LogPath, d.Log())
			t.Logf("OTA server log: %s", stack.OTAServer.LogPath())
		}
	})
	return d
}

// deviceID is the device ID the OTA server gives a Mender device with key.
func deviceID(t *testing.T, key *mendertest.Key) string {
	t.Helper()
	k, err := menderkey.Parse(key.PublicPEM)
	if err != nil {
		t.Fatal(err)
	}
	return k.DeviceID()
}

// storedDevice is a device as the OTA server's store has it.
type storedDevice struct {
	ID, Type, Version, Namespace, Enrollment, KEM string
	Labels                                        map[string]string
}

// errNoDevice: the store has no such device.
var errNoDevice = errors.New("no such device in the OTA server's store")

// readDevice reads a device from the OTA server's SQLite store.
func readDevice(ctx context.Context, id string) (storedDevice, error) {
	db, err := sql.Open("sqlite", "file:"+stack.StorePath()+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return storedDevice{}, err
	}
	defer db.Close()
	d := storedDevice{ID: id}
	var labels string
	err = db.QueryRowContext(ctx, `SELECT type, version, namespace, enrollment, kem, labels FROM devices WHERE id = ?`, id).
		Scan(&d.Type, &d.Version, &d.Namespace, &d.Enrollment, &d.KEM, &labels)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("%s: %w", id, errNoDevice)
	}
	if err != nil {
		return d, fmt.Errorf("read device %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(labels), &d.Labels); err != nil {
		return d, fmt.Errorf("device %s labels %q: %w", id, labels, err)
	}
	return d, nil
}

// storedRecord is a device's record in a rollout, from the store.
type storedRecord struct{ RolloutUID, State, Reason string }

// readRecord reads the only rollout record of a device.
func readRecord(ctx context.Context, id string) (storedRecord, error) {
	db, err := sql.Open("sqlite", "file:"+stack.StorePath()+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return storedRecord{}, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT rollout_uid, state, reason FROM records WHERE device_id = ?`, id)
	if err != nil {
		return storedRecord{}, fmt.Errorf("read records of %s: %w", id, err)
	}
	defer rows.Close()
	var recs []storedRecord
	for rows.Next() {
		var r storedRecord
		if err := rows.Scan(&r.RolloutUID, &r.State, &r.Reason); err != nil {
			return storedRecord{}, err
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return storedRecord{}, err
	}
	if len(recs) != 1 {
		return storedRecord{}, fmt.Errorf("device %s has %d records, want 1: %+v", id, len(recs), recs)
	}
	return recs[0], nil
}

// waitDevice polls the store until the device satisfies ok.
func waitDevice(t *testing.T, ctx context.Context, id string, ok func(storedDevice) bool) storedDevice {
	t.Helper()
	for {
		d, err := readDevice(ctx, id)
		if err == nil && ok(d) {
			return d
		}
		if err != nil && !errors.Is(err, errNoDevice) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("device %s in the store: %+v (%v); waited: %v", id, d, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitCalls waits until the device's update module was called with call
// ("TYPE STATE").
func waitCalls(t *testing.T, ctx context.Context, d *mendertest.Device, call string) {
	t.Helper()
	for !slices.Contains(d.ModuleCalls(), call) {
		select {
		case <-ctx.Done():
			t.Fatalf("the update module was never called with %q (calls: %q)", call, d.ModuleCalls())
		case <-d.Exited():
			t.Fatalf("mender-client exited before the module call %q", call)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readyCondition is the release's Ready condition, or nil.
func readyCondition(rel *otav1.FirmwareRelease) *metav1.Condition {
	return meta.FindStatusCondition(rel.Status.Conditions, otav1.ConditionReady)
}

// countIn counts the lines of log containing s.
func countIn(log, s string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
