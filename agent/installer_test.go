package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func stageFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestABSlots(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name       string
		hook       string
		bootFails  bool
		wantErr    string
		wantActive string
		wantRun    string
	}{
		{name: "switch and confirm", hook: "true", wantActive: "b", wantRun: "2.0.0"},
		{name: "no hook", wantActive: "b", wantRun: "2.0.0"},
		{name: "failing switch hook keeps the old slot", hook: "echo nope >&2; exit 3", wantErr: "nope", wantActive: "a", wantRun: "1.0.0"},
		{name: "boot fails: bootloader stays on the old slot", hook: "true", bootFails: true, wantActive: "b", wantRun: "1.0.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := InitSlots(dir, "1.0.0"); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(dir, "hook.log")
			s := &ABSlots{Dir: dir}
			if tc.hook != "" {
				s.SwitchHook = []string{"/bin/sh", "-c", `echo "$1 $2" >> ` + log + "; " + tc.hook, "hook"}
			}
			booted := ""
			s.BootedSlot = func() (string, error) {
				if booted == "" {
					st, _ := s.Load()
					return st.Active, nil
				}
				return booted, nil
			}
			if v, _ := s.Running(ctx); v != "1.0.0" {
				t.Fatalf("running %q", v)
			}
			err := s.Install(ctx, Image{Version: "2.0.0", Path: stageFile(t, "new image")})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("install: %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(s.SlotPath("b")); string(b) != "new image" {
				t.Fatalf("slot b %q", b)
			}
			if tc.hook != "" {
				if b, _ := os.ReadFile(log); !strings.HasPrefix(string(b), "b "+s.SlotPath("b")) {
					t.Fatalf("hook args %q", b)
				}
			}
			st, _ := s.Load()
			if st.Active != tc.wantActive {
				t.Fatalf("active %q, want %q", st.Active, tc.wantActive)
			}
			if tc.bootFails {
				booted = "a"
			}
			if v, _ := s.Running(ctx); v != tc.wantRun {
				t.Fatalf("running after reboot %q, want %q", v, tc.wantRun)
			}
			if tc.wantRun == "2.0.0" {
				if err := s.Confirm(ctx, "2.0.0"); err != nil {
					t.Fatal(err)
				}
				if st, _ := s.Load(); st.Trial || st.Active != "b" {
					t.Fatalf("after confirm %+v", st)
				}
			} else if err := s.Confirm(ctx, "2.0.0"); err == nil {
				t.Fatal("confirmed a version that is not running")
			}
		})
	}
	if err := (&ABSlots{Dir: t.TempDir()}).Install(ctx, Image{Version: "2"}); err == nil {
		t.Fatal("installed without a staged file")
	}
}

func TestCommandInstaller(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	vf := filepath.Join(dir, "version")
	out := filepath.Join(dir, "installed")
	c := &Command{
		Argv:        []string{"/bin/sh", "-c", `cp "$1" ` + out + ` && echo "$OTA_VERSION $OTA_SECURITY_VERSION $OTA_ROLLBACK" > ` + out + `.env`, "inst"},
		VersionFile: vf,
	}
	if v, err := c.Running(ctx); err != nil || v != "" {
		t.Fatalf("no version file: %q %v", v, err)
	}
	_ = os.WriteFile(vf, []byte("1.0.0\n"), 0o600)
	if v, _ := c.Running(ctx); v != "1.0.0" {
		t.Fatalf("running %q", v)
	}
	if err := c.Install(ctx, Image{Version: "2.0.0", SecurityVersion: 7, Path: stageFile(t, "img")}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "img" {
		t.Fatalf("installed %q", b)
	}
	if b, _ := os.ReadFile(out + ".env"); string(b) != "2.0.0 7 false\n" {
		t.Fatalf("env %q", b)
	}
	c.Argv = []string{"/bin/sh", "-c", "echo disk full >&2; exit 1", "inst"}
	if err := c.Install(ctx, Image{Version: "2", Path: stageFile(t, "x")}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failing command: %v", err)
	}
	if err := c.Confirm(ctx, "2"); err != nil {
		t.Fatal(err)
	}
}

func TestFileStagingResume(t *testing.T) {
	fs := FileStaging{Dir: t.TempDir()}
	st, kept, err := fs.Begin("abcdef0123456789ffff", 0)
	if err != nil || kept != 0 {
		t.Fatal(kept, err)
	}
	_, _ = st.Write([]byte("0123456789"))
	_ = st.Sync()
	_ = st.Close()
	// Resume keeping 4 verified bytes: the rest is dropped.
	st, kept, _ = fs.Begin("abcdef0123456789ffff", 4)
	var b strings.Builder
	_ = st.Replay(&b)
	if kept != 4 || b.String() != "0123" {
		t.Fatalf("kept %d replay %q", kept, b.String())
	}
	_, _ = st.Write([]byte("xy"))
	_ = st.Close()
	if got, _ := os.ReadFile(st.Path()); string(got) != "0123xy" {
		t.Fatalf("staged %q", got)
	}
	// More than the file holds: start over.
	if _, kept, _ := fs.Begin("abcdef0123456789ffff", 100); kept != 0 {
		t.Fatalf("kept %d of a short file", kept)
	}
	// Another image removes the old staging file.
	st2, _, _ := fs.Begin("99999999999999999999", 0)
	st2.Close()
	if m, _ := filepath.Glob(filepath.Join(fs.Dir, "staging-*")); len(m) != 1 {
		t.Fatalf("staging files %v", m)
	}
	_ = fs.Discard()
	if m, _ := filepath.Glob(filepath.Join(fs.Dir, "staging-*")); len(m) != 0 {
		t.Fatalf("after discard %v", m)
	}
}
