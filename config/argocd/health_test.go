package argocd

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

func health(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	status, msg, err := Evaluate(script, obj)
	if err != nil {
		t.Fatal(err)
	}
	return status, msg
}

func load(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func TestRolloutHealth(t *testing.T) {
	for _, tc := range []struct{ file, status, message string }{
		{"rollout-pending.yaml", "Progressing", "FirmwareRelease sensor-2.1.0 not found"},
		{"rollout-progressing.yaml", "Progressing", "wave 1/3 canary open: 4 of 10 devices succeeded, 10 needed (95%)"},
		{"rollout-paused.yaml", "Suspended", "wave canary completed; set spec.approvedWave to \"canary\" to open wave early"},
		{"rollout-succeeded.yaml", "Healthy", "all 3 waves completed"},
		{"rollout-aborted.yaml", "Degraded", "FailureThreshold: 4 of 10 offered devices failed or timed out (40.0%), above failureThreshold 5% with minFailures 3"},
		{"rollout-stale.yaml", "Progressing", "Waiting for the rollout controller to observe the latest spec"},
		{"rollout-new.yaml", "Progressing", "Waiting for the rollout controller"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			status, msg := health(t, RolloutHealth, load(t, tc.file))
			if status != tc.status || msg != tc.message {
				t.Fatalf("health = %s %q, want %s %q", status, msg, tc.status, tc.message)
			}
		})
	}
}

func TestFirmwareReleaseHealth(t *testing.T) {
	for _, tc := range []struct{ file, status, message string }{
		{"release-ready.yaml", "Healthy", "encrypted artifact 5f2b ready: 1048576 bytes (1049648 encrypted)"},
		{"release-stalled.yaml", "Degraded", "DigestMismatch: image sha256 is 1111, spec.source.sha256 is 2222"},
		{"release-fetching.yaml", "Progressing", "fetching, verifying and encrypting https://firmware.example.com/fw.bin"},
		{"release-new.yaml", "Progressing", "Waiting for the release to be verified"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			status, msg := health(t, FirmwareReleaseHealth, load(t, tc.file))
			if status != tc.status || msg != tc.message {
				t.Fatalf("health = %s %q, want %s %q", status, msg, tc.status, tc.message)
			}
		})
	}
}
