package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestFormatAndFilenameValidation: spec.format and spec.artifactFilename
// are checked at apply time, the file name against the format's extension.
func TestFormatAndFilenameValidation(t *testing.T) {
	const badName = "artifactFilename must be 1 to 128 characters A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
	format := func(f string) func(*unstructured.Unstructured) { return set("spec.format", f) }
	name := func(n string) func(*unstructured.Unstructured) { return set("spec.artifactFilename", n) }
	for i, tc := range []struct {
		name   string
		mutate []func(*unstructured.Unstructured)
		want   string
	}{
		{"format unknown", []func(*unstructured.Unstructured){format("Zip")}, `spec.format: Unsupported value: "Zip"`},
		{"format lowercase", []func(*unstructured.Unstructured){format("swupdate")}, `spec.format: Unsupported value: "swupdate"`},
		{"filename with path", []func(*unstructured.Unstructured){name("../fw.swu")}, badName},
		{"filename with slash", []func(*unstructured.Unstructured){name("a/fw.swu")}, badName},
		{"filename with space", []func(*unstructured.Unstructured){name("my fw.bin")}, badName},
		{"filename hidden", []func(*unstructured.Unstructured){name(".fw.bin")}, badName},
		{"filename empty", []func(*unstructured.Unstructured){name("")}, badName},
		{"filename non-ascii", []func(*unstructured.Unstructured){name("für.bin")}, badName},
		{"filename too long", []func(*unstructured.Unstructured){name(strings.Repeat("a", 125) + ".swu")}, "spec.artifactFilename: Too long"},
		{"swupdate with raucb", []func(*unstructured.Unstructured){format("SWUpdate"), name("fw.raucb")}, "artifactFilename of a SWUpdate release must end in .swu"},
		{"swupdate without extension", []func(*unstructured.Unstructured){format("SWUpdate"), name("fw")}, "artifactFilename of a SWUpdate release must end in .swu"},
		{"swupdate uppercase extension", []func(*unstructured.Unstructured){format("SWUpdate"), name("fw.SWU")}, "artifactFilename of a SWUpdate release must end in .swu"},
		{"rauc with swu", []func(*unstructured.Unstructured){format("RAUC"), name("bundle.swu")}, "artifactFilename of a RAUC release must end in .raucb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := validRelease(fmt.Sprintf("format-invalid-%d", i))
			for _, m := range tc.mutate {
				m(obj)
			}
			err := k8s.Create(context.Background(), obj)
			if err == nil {
				_ = k8s.Delete(context.Background(), obj)
				t.Fatalf("apiserver accepted the release; want refusal with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q; want message containing %q", err, tc.want)
			}
		})
	}

	for i, fields := range []map[string]string{
		{"format": "SWUpdate", "artifactFilename": "sensor-2.1.0.swu"},
		{"format": "SWUpdate"},
		{"format": "RAUC", "artifactFilename": "bundle_2.1.0.raucb"},
		{"format": "Raw", "artifactFilename": "image.img.gz"},
		{"format": "SWUpdate", "artifactFilename": strings.Repeat("a", 124) + ".swu"},
		{"artifactFilename": "0"},
	} {
		obj := validRelease(fmt.Sprintf("format-valid-%d", i))
		for k, v := range fields {
			set("spec."+k, v)(obj)
		}
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Errorf("%v refused: %v", fields, err)
		}
	}
}

// TestFormatDefaultAndImmutable: format defaults to Raw; format and
// artifactFilename cannot change, nor be set or removed later.
func TestFormatDefaultAndImmutable(t *testing.T) {
	ctx := context.Background()
	plain := validRelease("format-default")
	if err := k8s.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(plain), plain); err != nil {
		t.Fatal(err)
	}
	if f, _, _ := unstructured.NestedString(plain.Object, "spec", "format"); f != "Raw" {
		t.Errorf("spec.format defaulted to %q, want Raw", f)
	}
	if err := edit(t, plain, set("spec.format", "SWUpdate")); err == nil || !strings.Contains(err.Error(), "format is immutable; create a new FirmwareRelease") {
		t.Errorf("format change: got %v, want refusal", err)
	}
	if err := edit(t, plain, set("spec.artifactFilename", "late.bin")); err == nil || !strings.Contains(err.Error(), "artifactFilename is immutable; create a new FirmwareRelease") {
		t.Errorf("setting artifactFilename later: got %v, want refusal", err)
	}

	rel := validRelease("format-immutable")
	set("spec.format", "RAUC")(rel)
	set("spec.artifactFilename", "bundle.raucb")(rel)
	if err := k8s.Create(ctx, rel); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*unstructured.Unstructured)
		want   string
	}{
		{"format", set("spec.format", "SWUpdate"), "format is immutable"},
		{"format removed", unset("spec.format"), "format is immutable"}, // defaulted to Raw
		{"filename", set("spec.artifactFilename", "other.raucb"), "artifactFilename is immutable"},
		{"filename removed", unset("spec.artifactFilename"), "artifactFilename is immutable"},
	} {
		if err := edit(t, rel, tc.mutate); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("update of %s: got %v, want refusal with %q", tc.name, err, tc.want)
		}
	}
	// Where the image comes from stays editable.
	if err := edit(t, rel, set("spec.source.url", "https://mirror.example.com/bundle.raucb")); err != nil {
		t.Errorf("url edit refused: %v", err)
	}
}
