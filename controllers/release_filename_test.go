package controllers

import (
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// filenamePattern is spec.artifactFilename's CEL rule.
var filenamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func TestDefaultArtifactFilename(t *testing.T) {
	long := strings.Repeat("a", 140)
	for _, tc := range []struct {
		name, url, release, version string
		format                      otav1.ReleaseFormat
		want                        string
	}{
		{"https swu", "https://fw.example.com/releases/sensor-2.1.0.swu", "sensor", "2.1.0", otav1.FormatSWUpdate, "sensor-2.1.0.swu"},
		{"https swu without extension", "https://fw.example.com/releases/sensor", "sensor", "2.1.0", otav1.FormatSWUpdate, "sensor.swu"},
		{"https raucb", "https://fw.example.com/bundle.raucb?token=x#frag", "b", "1.0.0", otav1.FormatRAUC, "bundle.raucb"},
		{"rauc name of another format", "https://fw.example.com/update.swu", "b", "1.0.0", otav1.FormatRAUC, "update.swu.raucb"},
		{"raw keeps its name", "http://10.0.0.5:8080/fw/image.img.gz", "r", "1.0.0", otav1.FormatRaw, "image.img.gz"},
		{"raw without extension", "https://fw.example.com/firmware", "r", "1.0.0", otav1.FormatRaw, "firmware"},
		{"unset format is raw", "https://fw.example.com/firmware", "r", "1.0.0", "", "firmware"},
		{"percent-escaped", "https://fw.example.com/my%20image%2B1.swu", "r", "1.0.0", otav1.FormatSWUpdate, "my_image_1.swu"},
		{"non-ascii", "https://fw.example.com/f%C3%BCr.swu", "r", "1.0.0", otav1.FormatSWUpdate, "f_r.swu"},
		{"hidden file", "https://fw.example.com/.fw.swu", "r", "1.0.0", otav1.FormatSWUpdate, "fw.swu"},
		{"s3 key", "s3://firmware/releases/sensor-2.1.0.raucb", "r", "2.1.0", otav1.FormatRAUC, "sensor-2.1.0.raucb"},
		{"s3 escaped key", "s3://fw.example-bucket/a%20b.bin", "r", "2.1.0", otav1.FormatRaw, "a_b.bin"},
		{"oci tag", "oci://ghcr.io/acme/firmware/sensor:latest", "r", "2.1.0", otav1.FormatSWUpdate, "sensor-2.1.0.swu"},
		{"oci digest", "oci://registry.infra.svc:5000/fw@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "r", "2.1.0-rc.1+b7", otav1.FormatRAUC, "fw-2.1.0-rc.1_b7.raucb"},
		{"oci raw", "oci://[fd00::1]:5000/a__b/c-d.e:v1_2", "r", "1.0.0", otav1.FormatRaw, "c-d.e-1.0.0.bin"},
		{"url ends in slash", "https://fw.example.com/download/", "sensor", "2.1.0", otav1.FormatSWUpdate, "sensor-2.1.0.swu"},
		{"url without path", "https://fw.example.com?id=3", "sensor", "2.1.0", otav1.FormatRaw, "sensor-2.1.0.bin"},
		{"name of dots only", "https://fw.example.com/...", "sensor", "2.1.0", otav1.FormatRAUC, "sensor-2.1.0.raucb"},
		{"long swu name", "https://fw.example.com/" + long + ".swu", "r", "1.0.0", otav1.FormatSWUpdate, long[:124] + ".swu"},
		{"long name gets extension", "https://fw.example.com/" + long, "r", "1.0.0", otav1.FormatRAUC, long[:122] + ".raucb"},
		{"long raw name", "https://fw.example.com/" + long + ".img", "r", "1.0.0", otav1.FormatRaw, long[:124] + ".img"},
		{"long release name", "https://fw.example.com/", strings.Repeat("r", 200), "1.0.0", otav1.FormatSWUpdate, strings.Repeat("r", 124) + ".swu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := defaultArtifactFilename(tc.url, tc.release, tc.version, tc.format)
			if got != tc.want {
				t.Errorf("defaultArtifactFilename(%q) = %q, want %q", tc.url, got, tc.want)
			}
			if !filenamePattern.MatchString(got) {
				t.Errorf("%q does not match spec.artifactFilename's pattern", got)
			}
		})
	}
}

func TestArtifactFilenameFromSpec(t *testing.T) {
	rel := &otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Name: "sensor"},
		Spec: otav1.FirmwareReleaseSpec{
			Version: "2.1.0", Format: otav1.FormatSWUpdate,
			Source: otav1.Source{URL: "https://fw.example.com/x.swu"},
		},
	}
	if got := artifactFilename(rel); got != "x.swu" {
		t.Errorf("derived %q, want x.swu", got)
	}
	rel.Spec.ArtifactFilename = "sensor-fw.swu"
	if got := artifactFilename(rel); got != "sensor-fw.swu" {
		t.Errorf("with spec.artifactFilename: %q, want sensor-fw.swu", got)
	}
}
