package catalog

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// TestDDIReady: a release goes to DDI clients only when servable, of a DDI
// format, and with the digests and file name they check; the reason names
// what is missing.
func TestDDIReady(t *testing.T) {
	complete := func(a *otav1.Artifact) {
		a.PlainSHA1, a.PlainMD5, a.Filename = strings.Repeat("a", 40), strings.Repeat("b", 32), "fw.swu"
	}
	for _, tc := range []struct {
		name   string
		ready  bool
		format otav1.ReleaseFormat
		edit   func(*otav1.Artifact)
		key    bool
		want   string // "" when DDIReady
	}{
		{"swupdate complete", true, otav1.FormatSWUpdate, complete, true, ""},
		{"rauc complete", true, otav1.FormatRAUC, complete, true, ""},
		{"raw", true, otav1.FormatRaw, complete, true, "format Raw is for otaflow agents only"},
		{"format unset is raw", true, "", complete, true, "format Raw is for otaflow agents only"},
		{"not ready", false, otav1.FormatSWUpdate, complete, true, "release not servable"},
		{"no content key", true, otav1.FormatSWUpdate, complete, false, "release not servable"},
		{"built before digests", true, otav1.FormatRAUC, func(a *otav1.Artifact) { a.Filename = "b.raucb" }, true, "status.artifact lacks plainSHA1, plainMD5"},
		{"no filename", true, otav1.FormatSWUpdate, func(a *otav1.Artifact) { complete(a); a.Filename = "" }, true, "status.artifact lacks filename"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := rel("r", "1.0.0", tc.ready)
			fr.Spec.Format = tc.format
			tc.edit(fr.Status.Artifact)
			keys := map[string]*corev1.Secret{}
			if tc.key {
				keys["ns/r-key"] = key("r-key", "uid-r", 32)
			}
			s := Build(nil, []otav1.FirmwareRelease{fr}, keys)
			r := s.PreviousRelease("ns", "1.0.0", "t1")
			if r == nil {
				r = compileRelease(&fr, keys) // not usable: PreviousRelease skips it
			}
			if tc.format != "" && r.Format != tc.format {
				t.Errorf("Format = %q, want %q", r.Format, tc.format)
			}
			reason, ok := r.DDIReady()
			if tc.want == "" {
				if !ok || reason != "" {
					t.Fatalf("DDIReady = %q, %v; want ready", reason, ok)
				}
				if r.Artifact.PlainSHA1 != strings.Repeat("a", 40) || r.Artifact.Filename != "fw.swu" {
					t.Errorf("artifact fields not carried into the catalog: %+v", r.Artifact)
				}
				return
			}
			if ok || !strings.Contains(reason, tc.want) {
				t.Fatalf("DDIReady = %q, %v; want not ready with %q", reason, ok, tc.want)
			}
		})
	}
}
