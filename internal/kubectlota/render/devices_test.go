package render

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

func device(name, version, typ, protocol, lastRollout, lastState string, records ...devv1.DeviceRollout) *devv1.Device {
	return &devv1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "fleet-eu"},
		Status: devv1.DeviceStatus{Version: version, Type: typ, Protocol: protocol,
			Rollout: lastRollout, State: lastState, Rollouts: records},
	}
}

func fleet() []*devv1.Device {
	rec := func(ro, state string) devv1.DeviceRollout { return devv1.DeviceRollout{Rollout: ro, State: state} }
	return []*devv1.Device{
		device("a", "2.1.0", "sensor", devv1.ProtocolNative, "r21", "succeeded", rec("r21", "succeeded"), rec("r20", "succeeded")),
		device("b", "2.1.0", "sensor", devv1.ProtocolNative, "r21", "succeeded", rec("r21", "succeeded")),
		device("c", "2.0.0", "sensor", devv1.ProtocolDDI, "r21", "failed", rec("r21", "failed"), rec("r20", "succeeded")),
		device("d", "2.0.0", "gateway", devv1.ProtocolMender, "r20", "succeeded", rec("r20", "succeeded")),
		device("e", "", "sensor", devv1.ProtocolNative, "", ""),
		// The history lacks r21 but status.rollout names it.
		device("f", "2.0.0", "sensor", devv1.ProtocolNative, "r21", "installing"),
	}
}

func TestDevicesGolden(t *testing.T) {
	for _, tc := range []struct {
		name, rollout string
	}{
		{"devices-namespace", ""},
		{"devices-rollout", "r21"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewDeviceSummary("fleet-eu", tc.rollout)
			for _, d := range fleet() {
				s.Add(d)
			}
			var b strings.Builder
			if err := Devices(&b, s); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.String())
		})
	}
}

func TestDeviceSummaryStates(t *testing.T) {
	s := NewDeviceSummary("fleet-eu", "r20")
	for _, d := range fleet() {
		s.Add(d)
	}
	// r20: a, c, d have records (succeeded); b, e, f have none in r20.
	want := map[string]int64{"succeeded": 3, noRecord: 3}
	if len(s.ByState) != len(want) {
		t.Fatalf("states %v, want %v", s.ByState, want)
	}
	for k, v := range want {
		if s.ByState[k] != v {
			t.Errorf("state %s: %d devices, want %d (all: %v)", k, s.ByState[k], v, s.ByState)
		}
	}
	if s.Total != 6 || s.ByVersion["2.0.0"] != 3 || s.ByVersion[unknownVersion] != 1 {
		t.Errorf("total %d, versions %v", s.Total, s.ByVersion)
	}
}

func TestDevicesEmpty(t *testing.T) {
	var b strings.Builder
	if err := Devices(&b, NewDeviceSummary("fleet-eu", "")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "0 devices in namespace fleet-eu\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
