package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// TestFleetsimKeys: simulated devices are provisioned like real ones: a
// bundle of keys is trusted as a whole, and devices that trust none of the
// server's keys (they missed a rotation) refuse every assignment as
// untrusted-signing-key, as a real agent does, without installing.
func TestFleetsimKeys(t *testing.T) {
	url, assignPEM, vendorPEM := testServer(t, false)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherPEM, _ := assignment.MarshalPublicKeyPEM(otherPub)
	dir := t.TempDir()
	vk := filepath.Join(dir, "v.pem")
	_ = os.WriteFile(vk, vendorPEM, 0o600)
	for _, tc := range []struct {
		name    string
		keys    []byte
		version string
		refusal string
	}{
		{"bundle with the server key", append(append([]byte{}, otherPEM...), assignPEM...), "2.0.0", ""},
		{"only a retired key", otherPEM, "1.0.0", agent.RefuseUntrustedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak, out := filepath.Join(dir, "a.pem"), filepath.Join(dir, "summary.json")
			_ = os.WriteFile(ak, tc.keys, 0o600)
			var stdout, stderr bytes.Buffer
			code := run([]string{"--server", url, "--bootstrap-token", bootTok, "--assignment-key", ak, "--vendor-key", vk,
				"--id-prefix", strings.ReplaceAll(tc.name, " ", "-") + "-", "--devices", "4", "--poll-interval", "100ms",
				"--key-check-interval", "200ms", "--duration", "3s", "--progress", "none", "--summary-json", out,
			}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			var sum Summary
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sum); err != nil {
				t.Fatal(err)
			}
			if sum.ByVersion[tc.version] != 4 {
				t.Fatalf("byVersion %v, refusals %v", sum.ByVersion, sum.Refusals)
			}
			if tc.refusal != "" && (sum.Refusals[tc.refusal] < 4 || sum.ByState["failed"] != 4) {
				t.Fatalf("byState %v refusals %v", sum.ByState, sum.Refusals)
			}
			if tc.refusal == "" && len(sum.Refusals) != 0 {
				t.Fatalf("refusals %v", sum.Refusals)
			}
		})
	}
}

func TestKeyCheckIntervalOption(t *testing.T) {
	readFake := func(name string) ([]byte, error) { return []byte("PEM " + name), nil }
	base := []string{"--server", "https://ota", "--bootstrap-token", "tok", "--assignment-key", "a.pem", "--vendor-key", "v.pem"}
	o, err := parseOptions(append(base, "--key-check-interval", "5m"), &bytes.Buffer{}, readFake)
	if err != nil || o.keyCheck != 5*time.Minute {
		t.Fatalf("%v %v", o, err)
	}
	if o, err = parseOptions(base, &bytes.Buffer{}, readFake); err != nil || o.keyCheck != time.Hour {
		t.Fatalf("default: %v %v", o, err)
	}
	if _, err := parseOptions(append(base, "--key-check-interval", "1ms"), &bytes.Buffer{}, readFake); err == nil || !strings.Contains(err.Error(), "--key-check-interval") {
		t.Fatalf("1ms: %v", err)
	}
}
