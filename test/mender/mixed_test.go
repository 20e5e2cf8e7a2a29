package mender

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/internal/mendertest"
)

// TestMixedFleet: native agents and real mender-clients in one rollout of
// two waves, of one release whose image is a Mender artifact (native
// agents install any image). One mender-client insists on signed
// artifacts and refuses the unsigned one: it fails like a native device
// would, within the thresholds, and the status counts every device once.
func TestMixedFleet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns, nNative, nMender, total = "mender-mixed", 20, 5, 20 + 5
	tok := tenant(t, ctx, ns, nil)
	// No release of the factory image here: its artifact name is unknown
	// to the server, which ranks such a device below every release.
	art, _ := publishMender(t, ctx, ns, "2.1.0", mendertest.ArtifactOptions{Name: "sensor-2.1.0", DeviceTypes: []string{deviceType}})

	fleet, err := stack.StartFleet(harness.FleetOptions{
		Name: "mixed-native", Devices: nNative, IDPrefix: "nat-", DeviceType: deviceType, Version: "2.0.0",
		Labels: "region=eu", PollInterval: "1s", BootstrapToken: tok, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fleet.Stop(10 * time.Second) }()

	// The first client verifies artifact signatures with a key the
	// release was not signed with.
	verifier := mendertest.GenerateKey(t, mendertest.KeyECDSA)
	clients := make([]*mendertest.Device, nMender)
	ids := make([]string, nMender)
	for i := range clients {
		key := mendertest.GenerateKey(t, mendertest.KeyECDSA)
		ids[i] = deviceID(t, key)
		opts := mendertest.Options{
			TenantToken: tok, ArtifactName: factoryArtifact, KeyPEM: key.PEM,
			Identity:          map[string]string{"mac": fmt.Sprintf("02:00:00:00:00:%02x", i)},
			UpdatePollSeconds: 2, InventoryPollSeconds: 2, RetryPollSeconds: 2,
		}
		if i == 0 {
			opts.ArtifactVerifyKey = verifier.PublicPEM
		}
		clients[i] = startClient(t, opts)
	}

	ro := createRollout(t, ctx, ns, "sensor-2.1.0-eu", releaseName(ns, "2.1.0"), []string{"50%", "100%"}, func(ro *otav1.Rollout) {
		// The 50% wave's size follows the ranks the rollout's UID seeds;
		// with the failing client in it, 80% lets it complete from 5
		// devices up (90% needed 10), so its size does not decide the
		// outcome.
		ro.Spec.SuccessThreshold = "80%"
		ro.Spec.FailureThreshold = "20%"
	})
	openWhen(t, ctx, ro, total)
	final, err := harness.WaitRollout(ctx, stack.CP.Client, ro,
		func(ro *otav1.Rollout) { t.Log(harness.RolloutLine(ro)) },
		func(ro *otav1.Rollout) (bool, error) {
			if ro.Status.Phase == otav1.RolloutAborted {
				return false, errors.New("rollout aborted: " + ro.Status.AbortReason)
			}
			tot := harness.Totals(ro)
			return ro.Status.Phase == otav1.RolloutSucceeded && tot.Succeeded+tot.Failed == total && len(ro.Status.RecentFailures) == 1, nil
		})
	if err != nil {
		t.Fatalf("%v (OTA server log: %s)", err, stack.OTAServer.LogPath())
	}
	tot := harness.Totals(final)
	if tot.Targeted != total || tot.Offered != total || tot.Succeeded != total-1 || tot.Failed != 1 ||
		tot.InProgress != 0 || tot.Canceled != 0 || tot.Skipped != 0 || tot.TimedOut != 0 {
		t.Fatalf("totals %+v, want %d targeted and offered, %d succeeded, 1 failed", tot, total, total-1)
	}
	if final.Status.Fleet == nil || final.Status.Fleet.Size != total {
		t.Fatalf("fleet %+v, want %d devices", final.Status.Fleet, total)
	}
	if len(final.Status.Waves) != 2 || final.Status.Waves[0].Targeted+final.Status.Waves[1].Targeted != total ||
		final.Status.Waves[0].Targeted == 0 || final.Status.Waves[1].Targeted == 0 {
		t.Fatalf("waves %+v, want two non-empty waves of %d devices together", final.Status.Waves, total)
	}
	f := final.Status.RecentFailures[0]
	const refusal = "expecting signed artifact, but no signature file found"
	if f.Device != ids[0] || !strings.HasPrefix(f.Reason, "mender: ") || !strings.Contains(f.Reason, refusal) {
		t.Fatalf("recent failure %+v, want %s failed with %q", f, ids[0], refusal)
	}

	for i, d := range clients {
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		cur, err := d.CurrentArtifact()
		if err != nil {
			t.Fatal(err)
		}
		dev, err := readDevice(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		installed, ierr := d.InstalledFile(art.PayloadName)
		if i == 0 {
			if cur != factoryArtifact || ierr == nil || dev.Version != "0.0.0-unreleased+"+factoryArtifact {
				t.Errorf("client %d (refusing the unsigned artifact): current artifact %q, installed %d bytes, stored version %q",
					i, cur, len(installed), dev.Version)
			}
			continue
		}
		if cur != "sensor-2.1.0" || string(installed) != string(art.Payload) || dev.Version != "2.1.0" {
			t.Errorf("client %d: current artifact %q, installed %d bytes (%v), stored version %q; want sensor-2.1.0, the payload, 2.1.0",
				i, cur, len(installed), ierr, dev.Version)
		}
	}
	if err := fleet.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	sum, err := fleet.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Devices != nNative || !sum.All(func(d harness.FleetDevice) bool { return d.Version == "2.1.0" }) {
		t.Fatalf("native fleet: %s, want all %d on 2.1.0", sum.Brief(), nNative)
	}
}
