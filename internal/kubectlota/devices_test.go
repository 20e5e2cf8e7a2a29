package kubectlota

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/deviceapitest"
)

// deviceAPI starts a fake device API and returns a kubeconfig for it whose
// context's namespace is fleet-eu.
func deviceAPI(t *testing.T, devices []devv1.Device, decisions map[string]devv1.DeviceDecision) (*deviceapitest.Server, string) {
	t.Helper()
	srv := deviceapitest.New(devices, decisions)
	t.Cleanup(srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: %q}
users:
- name: fake
  user: {token: test}
contexts:
- name: fake
  context: {cluster: fake, user: fake, namespace: fleet-eu}
current-context: fake
`, srv.URL)
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, kc
}

// squash puts text on one line with single spaces, for checks that do not
// depend on column widths.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// runWith runs the plugin with another kubeconfig.
func runWith(t *testing.T, kubeconfig string, args ...string) result {
	t.Helper()
	var out, errOut strings.Builder
	err := execute(t.Context(), &out, &errOut, kubeconfig, args...)
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// sensorFleet: 1,234 devices of fleet-eu; rollout sensor-2.1.0-eu has a
// record of the first 1,000 (succeeded, with every 50th failed and every
// 40th still installing), the rest run 2.0.0 with no record; 3 devices of
// another namespace.
func sensorFleet() []devv1.Device {
	var devs []devv1.Device
	for i := range 1234 {
		d := devv1.Device{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sensor-%04d", i), Namespace: "fleet-eu"}}
		d.Status.Type, d.Status.Protocol, d.Status.Version = "sensor", devv1.ProtocolNative, "2.0.0"
		if i%10 == 9 {
			d.Status.Protocol = devv1.ProtocolDDI
		}
		if i < 1000 {
			state := "succeeded"
			switch {
			case i%50 == 0:
				state = "failed"
			case i%40 == 0:
				state = "installing"
			}
			if state == "succeeded" {
				d.Status.Version = "2.1.0"
			}
			d.Status.Rollout, d.Status.State = "sensor-2.1.0-eu", state
			d.Status.Rollouts = []devv1.DeviceRollout{
				{Rollout: "sensor-2.1.0-eu", Release: "fleet-eu/sensor-2.1.0", Version: "2.1.0", PreviousVersion: "2.0.0", State: state},
				{Rollout: "sensor-2.0.0-all", Release: "fleet-eu/sensor-2.0.0", Version: "2.0.0", State: "succeeded"},
			}
		}
		devs = append(devs, d)
	}
	for i := range 3 {
		devs = append(devs, devv1.Device{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gw-%d", i), Namespace: "fleet-us"},
			Status: devv1.DeviceStatus{Type: "gateway", Version: "1.0.0"}})
	}
	return devs
}

func TestDevices(t *testing.T) {
	srv, kc := deviceAPI(t, sensorFleet(), nil)
	var tr transcript
	for _, args := range [][]string{
		{"devices"},
		{"devices", "--rollout", "sensor-2.1.0-eu"},
	} {
		r := runWith(t, kc, args...)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		tr.add(args, r)
	}
	golden(t, "devices", tr.b.String())

	out := squash(tr.b.String())
	for _, want := range []string{
		"$ kubectl ota devices 1234 devices in namespace fleet-eu VERSION",
		"1000 devices in namespace fleet-eu with a record in rollout sensor-2.1.0-eu",
		// 1000 records: 20 failed, 25 every 40th minus the 5 also every 50th
		// → 20 installing, 960 succeeded.
		"STATE IN sensor-2.1.0-eu DEVICES SHARE succeeded 960 96.0% failed 20 2.0% installing 20 2.0%",
		"VERSION DEVICES SHARE 2.1.0 960 77.8% 2.0.0 274 22.2%",
		"(no record) 234 19.0%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("devices output lacks %q", want)
		}
	}
	// Pages of 500: 3 for the namespace, 2 for the rollout.
	var pages []string
	for _, r := range srv.Requests() {
		if r.URL.Query().Get("limit") != "500" {
			t.Errorf("request without limit=500: %s", r.URL)
		}
		pages = append(pages, r.URL.Query().Get("fieldSelector"))
	}
	if want := []string{"", "", "", "status.rollout=sensor-2.1.0-eu", "status.rollout=sensor-2.1.0-eu"}; strings.Join(pages, "|") != strings.Join(want, "|") {
		t.Errorf("field selectors of the pages %q, want %q", pages, want)
	}
}

func TestDevicesFilters(t *testing.T) {
	srv, kc := deviceAPI(t, sensorFleet(), nil)
	r := runWith(t, kc, "devices", "--rollout", "sensor-2.1.0-eu", "--state", "failed", "--version", "2.0.0", "--type", "sensor", "-n", "fleet-eu")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.HasPrefix(r.out, "20 devices in namespace fleet-eu with a record in rollout sensor-2.1.0-eu") {
		t.Errorf("output %s", r.out)
	}
	got := srv.Requests()[0].URL.Query().Get("fieldSelector")
	if want := "status.rollout=sensor-2.1.0-eu,status.state=failed,status.type=sensor,status.version=2.0.0"; got != want {
		t.Errorf("fieldSelector %q, want %q", got, want)
	}
}

func TestDevicesExpired(t *testing.T) {
	srv, kc := deviceAPI(t, sensorFleet(), nil)
	srv.ExpireAfter(1)
	r := runWith(t, kc, "devices")
	if r.err == nil || !strings.Contains(r.err.Error(), "the list expired after 1 pages") || r.out != "" {
		t.Fatalf("error %v, output %q", r.err, r.out)
	}
}

func TestWhy(t *testing.T) {
	wave := func(i int) *int { return &i }
	_, kc := deviceAPI(t, nil, map[string]devv1.DeviceDecision{
		"fleet-eu/sensor-0042": {
			ObjectMeta: metav1.ObjectMeta{Name: "sensor-0042", Namespace: "fleet-eu"},
			Action:     "Offer", Rollout: "sensor-2.1.0-eu",
			Rollouts: []devv1.RolloutVerdict{
				{Rollout: "sensor-2.0.0-all", Release: "sensor-2.0.0", Version: "2.0.0", InFleet: true, Wave: wave(2), Verdict: devv1.VerdictDone, State: "succeeded"},
				{Rollout: "sensor-2.0.5-hotfix", Release: "sensor-2.0.5", Version: "2.0.5", InFleet: true, Wave: wave(0), Verdict: devv1.VerdictOffer, Reason: "another rollout acts on the device"},
				{Rollout: "sensor-2.1.0-eu", Release: "sensor-2.1.0", Version: "2.1.0", InFleet: true, Wave: wave(1), Verdict: devv1.VerdictActs, Reason: "Offer"},
				{Rollout: "gateway-1.4.0", Release: "gateway-1.4.0", Version: "1.4.0", Verdict: devv1.VerdictNotInFleet, Reason: `the device's labels do not match the selector "region=eu"`},
			},
		},
		"fleet-eu/sensor-0007": {
			ObjectMeta: metav1.ObjectMeta{Name: "sensor-0007", Namespace: "fleet-eu"},
			Action:     "Nothing", Reason: "rollout not offering",
			Rollouts: []devv1.RolloutVerdict{
				{Rollout: "sensor-2.1.0-eu", Release: "sensor-2.1.0", Version: "2.1.0", InFleet: true, Wave: wave(2), Verdict: devv1.VerdictWait, Reason: "rollout not offering"},
				{Rollout: "sensor-1.9.0", Release: "sensor-1.9.0", Version: "1.9.0", InFleet: true, Verdict: devv1.VerdictSkip, State: "skipped", Reason: "skipped: the device runs the same or a newer version"},
			},
		},
	})
	var tr transcript
	for _, args := range [][]string{{"why", "sensor-0042"}, {"why", "sensor-0007"}} {
		r := runWith(t, kc, args...)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		tr.add(args, r)
	}
	golden(t, "why", tr.b.String())
	if !strings.Contains(tr.b.String(), "it would be told to install release sensor-2.1.0 (version 2.1.0), offered by rollout sensor-2.1.0-eu.") {
		t.Errorf("the offer is not explained:\n%s", tr.b.String())
	}

	r := runWith(t, kc, "why", "sensor-9999")
	if r.err == nil || !strings.Contains(r.err.Error(), "device sensor-9999 not found in namespace fleet-eu") {
		t.Errorf("error %v, want not found", r.err)
	}
	r = runWith(t, kc, "why", "sensor-0042", "-n", "fleet-us")
	if r.err == nil || !strings.Contains(r.err.Error(), "not found in namespace fleet-us") {
		t.Errorf("-n is not used: %v", r.err)
	}
}
