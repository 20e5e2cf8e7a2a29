package catalog

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func menderRel(name, version, artifact string, ready bool) otav1.FirmwareRelease {
	r := rel(name, version, ready)
	r.Spec.Format = otav1.FormatMender
	r.Status.Artifact.Mender = &otav1.MenderArtifact{Name: artifact, DeviceTypes: []string{"t1"}}
	return r
}

// TestMenderVersion: a device's artifact name maps to the version of the
// usable Mender release of its namespace with that name and its device
// type, the highest when several share it; nothing else maps.
func TestMenderVersion(t *testing.T) {
	rels := []otav1.FirmwareRelease{
		menderRel("a", "2.0.0", "sensor-2", true),
		menderRel("b", "2.1.0", "sensor-2", true),  // same name, higher version
		menderRel("c", "3.0.0", "sensor-3", false), // not Ready
		menderRel("d", "4.0.0", "sensor-4", true),  // no content key
		rel("e", "5.0.0", true),                    // raw
	}
	rels[4].Status.Artifact.Mender = &otav1.MenderArtifact{Name: "sensor-5", DeviceTypes: []string{"t1"}}
	keys := map[string]*corev1.Secret{}
	for _, n := range []string{"a", "b", "c", "e"} {
		keys["ns/"+n+"-key"] = key(n+"-key", "uid-"+n, 32)
	}
	s := Build(nil, rels, keys)
	for _, tc := range []struct {
		ns, name, typ, want string
		ok                  bool
	}{
		{"ns", "sensor-2", "t1", "2.1.0", true},
		{"ns", "sensor-2", "t2", "", false}, // another device type
		{"other", "sensor-2", "t1", "", false},
		{"ns", "sensor-3", "t1", "", false},
		{"ns", "sensor-4", "t1", "", false},
		{"ns", "sensor-5", "t1", "", false},
		{"ns", "unknown", "t1", "", false},
	} {
		v, ok := s.MenderVersion(tc.ns, tc.name, tc.typ)
		if v != tc.want || ok != tc.ok {
			t.Errorf("MenderVersion(%s, %s, %s) = %q, %v; want %q, %v", tc.ns, tc.name, tc.typ, v, ok, tc.want, tc.ok)
		}
	}
}

// TestMenderReady: the reason names what keeps a release from
// mender-client devices.
func TestMenderReady(t *testing.T) {
	keys := map[string]*corev1.Secret{"ns/r-key": key("r-key", "uid-r", 32)}
	for _, tc := range []struct {
		name string
		fr   otav1.FirmwareRelease
		want string
	}{
		{"ready", menderRel("r", "1.0.0", "x", true), ""},
		{"not ready", menderRel("r", "1.0.0", "x", false), "release not servable"},
		{"raw", rel("r", "1.0.0", true), "format Raw is not a Mender artifact"},
		{"no header", func() otav1.FirmwareRelease {
			r := menderRel("r", "1.0.0", "x", true)
			r.Status.Artifact.Mender = nil
			return r
		}(), "lacks the Mender header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := compileRelease(&tc.fr, keys)
			reason, ok := r.MenderReady()
			if ok != (tc.want == "") || !strings.Contains(reason, tc.want) {
				t.Errorf("MenderReady = %q, %v; want %q", reason, ok, tc.want)
			}
		})
	}
}
