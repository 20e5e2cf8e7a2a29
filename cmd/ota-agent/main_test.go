package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/agent"
)

func TestParseFlagsAndEnv(t *testing.T) {
	env := map[string]string{"OTA_SERVER": "https://env", "OTA_DEVICE_ID": "from-env", "OTA_POLL_INTERVAL": "30s"}
	o, err := parse([]string{"--device-id", "from-flag", "--slots-dir", "/s", "--vendor-key", "a.pem", "--vendor-key", "b.pem"},
		func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.server != "https://env" || o.deviceID != "from-flag" || o.poll.String() != "30s" || len(o.vendorKeys) != 2 {
		t.Fatalf("%+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "an installer is required"},
		{[]string{"--slots-dir", "a", "--install-command", "b"}, "not both"},
	} {
		if _, err := parse(tc.args, func(string) string { return "" }, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := parse(nil, func(k string) string {
		if k == "OTA_POLL_INTERVAL" {
			return "soon"
		}
		return ""
	}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "OTA_POLL_INTERVAL") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	o := &options{
		server: "https://ota", deviceID: "d", deviceType: "t", labels: "region=eu, site=7", kem: "x25519",
		bootstrapFile: write("tok", "secret\n"), assignmentKey: write("a.pem", "A"), vendorKeys: list{write("v.pem", "V")},
		dataDir: filepath.Join(dir, "data"), slotsDir: filepath.Join(dir, "slots"), version: "1.0.0",
		switchHook: "true", rebootCmd: "true", poll: 1,
	}
	cfg, err := build(o, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BootstrapToken != "secret" || cfg.Labels["site"] != "7" || string(cfg.AssignmentKeyPEM) != "A" || cfg.Reboot == nil {
		t.Fatalf("%+v", cfg)
	}
	slots, ok := cfg.Installer.(*agent.ABSlots)
	if !ok {
		t.Fatalf("installer %T", cfg.Installer)
	}
	if v, err := slots.Running(t.Context()); err != nil || v != "1.0.0" {
		t.Fatalf("slots running %q %v", v, err)
	}
	if err := cfg.Reboot(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.slotsDir, o.installCmd, o.versionFile = "", "echo", write("version", "3.1.4\n")
	cfg, err = build(o, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cfg.Installer.Running(t.Context()); v != "3.1.4" {
		t.Fatalf("version file: %q", v)
	}
	o.labels = "novalue"
	if _, err := build(o, logr.Discard()); err == nil {
		t.Fatal("bad labels accepted")
	}
}
