package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const ociDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func source(fields map[string]any) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		src, _, _ := unstructured.NestedMap(u.Object, "spec", "source")
		for k, v := range fields {
			if v == nil {
				delete(src, k)
				continue
			}
			src[k] = v
		}
		if err := unstructured.SetNestedMap(u.Object, src, "spec", "source"); err != nil {
			panic(err)
		}
	}
}

// TestSourceValidation: image sources are checked at apply time: the URL
// form of each scheme, fields that belong to another scheme, credentials in
// two places, and the Secret name.
func TestSourceValidation(t *testing.T) {
	const ociURL = "an oci URL is oci://registry/repository:tag"
	for i, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"scheme ftp", map[string]any{"url": "ftp://example.com/fw.bin"}, "url must be an absolute http, https, s3 or oci URL"},
		{"scheme file", map[string]any{"url": "file:///etc/passwd"}, "url must be an absolute http, https, s3 or oci URL"},
		{"s3 without key", map[string]any{"url": "s3://firmware"}, "an s3 URL is s3://bucket/key"},
		{"s3 key is a folder", map[string]any{"url": "s3://firmware/releases/"}, "an s3 URL is s3://bucket/key"},
		{"s3 with port", map[string]any{"url": "s3://firmware:9000/fw.bin"}, "an s3 URL is s3://bucket/key"},
		{"s3 with query", map[string]any{"url": "s3://firmware/fw.bin?endpoint=minio:9000"}, "an s3 URL is s3://bucket/key"},
		{"s3 with credentials", map[string]any{"url": "s3://AKIA:secret@firmware/fw.bin"}, "an s3 URL is s3://bucket/key"},
		{"s3 bucket uppercase", map[string]any{"url": "s3://Firmware/fw.bin"}, "an s3 URL is s3://bucket/key"},
		{"oci without reference", map[string]any{"url": "oci://ghcr.io/acme/fw"}, ociURL},
		{"oci repository uppercase", map[string]any{"url": "oci://ghcr.io/Acme/fw:1.0"}, ociURL},
		{"oci short digest", map[string]any{"url": "oci://ghcr.io/acme/fw@sha256:abcd"}, ociURL},
		{"oci tag and digest", map[string]any{"url": "oci://ghcr.io/acme/fw:1.0@" + ociDigest}, ociURL},
		{"oci with credentials", map[string]any{"url": "oci://robot:pw@ghcr.io/acme/fw:1.0"}, ociURL},
		{"oci without repository", map[string]any{"url": "oci://ghcr.io:1.0"}, ociURL},
		{"s3 fields on https", map[string]any{"s3": map[string]any{"region": "eu-west-1"}}, "s3 is only for s3:// URLs"},
		{"oci fields on s3", map[string]any{"url": "s3://firmware/fw.bin", "oci": map[string]any{"insecure": true}}, "oci is only for oci:// URLs"},
		{"credentials twice", map[string]any{"url": "https://alice:pw@firmware.example.com/fw.bin", "secretRef": map[string]any{"name": "creds"}}, "credentials go in secretRef or in the URL, not both"},
		{"secret name not DNS", map[string]any{"secretRef": map[string]any{"name": "Source_Creds"}}, "spec.source.secretRef.name in body should match"},
		{"secret name empty", map[string]any{"secretRef": map[string]any{"name": ""}}, "spec.source.secretRef.name in body should be at least 1 chars long"},
		{"secret name missing", map[string]any{"secretRef": map[string]any{}}, "spec.source.secretRef.name: Required value"},
		{"s3 endpoint with scheme", map[string]any{"url": "s3://firmware/fw.bin", "s3": map[string]any{"endpoint": "http://minio:9000"}}, "spec.source.s3.endpoint in body should match"},
		{"s3 endpoint with path", map[string]any{"url": "s3://firmware/fw.bin", "s3": map[string]any{"endpoint": "minio:9000/x"}}, "spec.source.s3.endpoint in body should match"},
		{"s3 region uppercase", map[string]any{"url": "s3://firmware/fw.bin", "s3": map[string]any{"region": "EU-WEST-1"}}, "spec.source.s3.region in body should match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := validRelease(fmt.Sprintf("source-invalid-%d", i))
			source(tc.fields)(obj)
			err := k8s.Create(context.Background(), obj)
			if err == nil {
				_ = k8s.Delete(context.Background(), obj)
				t.Fatalf("apiserver accepted %v; want refusal with %q", tc.fields, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q; want message containing %q", err, tc.want)
			}
		})
	}
}

func TestSourceFormsAccepted(t *testing.T) {
	for i, fields := range []map[string]any{
		{"url": "https://firmware.example.com/fw.bin", "secretRef": map[string]any{"name": "download-creds"}},
		{"url": "http://10.0.0.5:8080/fw.bin"},
		{"url": "s3://firmware/releases/sensor-2.1.0.bin"},
		{"url": "s3://fw.example-bucket/a%20b.bin", "s3": map[string]any{"endpoint": "minio.storage.svc.cluster.local:9000", "region": "eu-west-1", "insecure": true}, "secretRef": map[string]any{"name": "s3.creds"}},
		{"url": "s3://firmware/fw.bin", "s3": map[string]any{"endpoint": "[fd00::1]:9000"}},
		{"url": "oci://ghcr.io/acme/firmware/sensor:2.1.0", "secretRef": map[string]any{"name": "ghcr"}},
		{"url": "oci://registry.infra.svc:5000/fw@" + ociDigest, "oci": map[string]any{"insecure": true}},
		{"url": "oci://[fd00::1]:5000/a__b/c-d.e:v1_2"},
		{"url": "oci://localhost:5000/fw:latest"},
	} {
		obj := validRelease(fmt.Sprintf("source-valid-%d", i))
		source(fields)(obj)
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Errorf("%v refused: %v", fields, err)
		}
	}
}

// TestSourceLocationEditable: where the pinned image comes from may change
// (another scheme, server, Secret); what it is may not.
func TestSourceLocationEditable(t *testing.T) {
	rel := validRelease("source-editable")
	source(map[string]any{"url": "s3://firmware/fw.bin", "s3": map[string]any{"endpoint": "minio:9000"}, "secretRef": map[string]any{"name": "s3-creds"}})(rel)
	if err := k8s.Create(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		name   string
		fields map[string]any
	}{
		{"endpoint", map[string]any{"s3": map[string]any{"endpoint": "minio.storage:9000", "region": "eu-west-1"}}},
		{"secret", map[string]any{"secretRef": map[string]any{"name": "s3-creds-rotated"}}},
		{"to oci", map[string]any{"url": "oci://ghcr.io/acme/fw:2.1.0", "s3": nil, "oci": map[string]any{}}},
		{"to https without credentials", map[string]any{"url": "https://firmware.example.com/fw.bin", "oci": nil, "secretRef": nil}},
	} {
		if err := edit(t, rel, source(e.fields)); err != nil {
			t.Errorf("edit of %s refused: %v", e.name, err)
		}
	}
	err := edit(t, rel, source(map[string]any{"sha256": strings.Repeat("cd", 32)}))
	if err == nil || !strings.Contains(err.Error(), "source.sha256 is immutable") {
		t.Errorf("sha256 edit: got %v, want refusal", err)
	}
}
