package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// ABSlots installs into the inactive one of two slot files, slot-a and
// slot-b, in Dir, and keeps a small state file (slots.json) saying which
// slot is active, which version each holds, and whether the active one is
// still on trial.
//
// Install writes the image into the inactive slot (fsynced), records it as
// the next boot's slot, and runs SwitchHook, if set, with the slot name
// ("a" or "b") and the slot file as arguments; the hook tells the
// bootloader to try that slot once (for example `fw_setenv` or
// `grub-reboot`). Confirm marks the booted slot good and runs ConfirmHook
// with the same arguments. A boot that fails is the bootloader's to undo:
// it boots the old slot again, and BootedSlot then reports it, so the agent
// sees the old version and the server counts a revert.
type ABSlots struct {
	Dir string
	// SwitchHook and ConfirmHook are commands (argv[0] and leading
	// arguments); slot name and slot path are appended. Optional.
	SwitchHook  []string
	ConfirmHook []string
	// BootedSlot returns the slot that is running ("a" or "b"), for
	// example read from the kernel command line. When nil the slot from
	// the state file's last switch is assumed to have booted.
	BootedSlot func() (string, error)

	mu sync.Mutex
}

// SlotState is the content of slots.json.
type SlotState struct {
	// Active is the slot the last switch selected ("a" or "b").
	Active string `json:"active"`
	// Versions is the firmware version in each slot.
	Versions map[string]string `json:"versions"`
	// Trial is set after a switch until Confirm.
	Trial bool `json:"trial,omitempty"`
	// Previous is the slot that was active before the last switch.
	Previous string `json:"previous,omitempty"`
}

// SlotsStateFile is the state file of ABSlots.
const SlotsStateFile = "slots.json"

// InitSlots prepares dir for ABSlots with the running version in slot a,
// unless it is already initialized.
func InitSlots(dir, runningVersion string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, SlotsStateFile)); err == nil {
		return nil
	}
	s := SlotState{Active: "a", Versions: map[string]string{"a": runningVersion, "b": ""}}
	return (&ABSlots{Dir: dir}).save(s)
}

// Load reads the slot state.
func (s *ABSlots) Load() (SlotState, error) {
	var st SlotState
	b, err := os.ReadFile(filepath.Join(s.Dir, SlotsStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return SlotState{Active: "a", Versions: map[string]string{}}, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("slots: %s: %w", SlotsStateFile, err)
	}
	if st.Active != "a" && st.Active != "b" {
		return st, fmt.Errorf("slots: active slot %q", st.Active)
	}
	if st.Versions == nil {
		st.Versions = map[string]string{}
	}
	return st, nil
}

func (s *ABSlots) save(st SlotState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(s.Dir, SlotsStateFile), b, 0o600)
}

// SlotPath returns the file of slot name.
func (s *ABSlots) SlotPath(name string) string { return filepath.Join(s.Dir, "slot-"+name) }

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

func (s *ABSlots) booted(st SlotState) (string, error) {
	if s.BootedSlot == nil {
		return st.Active, nil
	}
	b, err := s.BootedSlot()
	if err != nil {
		return "", fmt.Errorf("slots: booted slot: %w", err)
	}
	if b != "a" && b != "b" {
		return "", fmt.Errorf("slots: booted slot %q is neither a nor b", b)
	}
	return b, nil
}

// Running implements Installer: the version of the booted slot.
func (s *ABSlots) Running(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Load()
	if err != nil {
		return "", err
	}
	b, err := s.booted(st)
	if err != nil {
		return "", err
	}
	return st.Versions[b], nil
}

// Install implements Installer.
func (s *ABSlots) Install(ctx context.Context, img Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img.Path == "" {
		return errors.New("slots: the image was not staged to a file (use FileStaging)")
	}
	st, err := s.Load()
	if err != nil {
		return err
	}
	cur, err := s.booted(st)
	if err != nil {
		return err
	}
	target := other(cur)
	if err := copyFileSync(img.Path, s.SlotPath(target)); err != nil {
		return fmt.Errorf("slots: write slot %s: %w", target, err)
	}
	st.Versions[target] = img.Version
	st.Previous, st.Active, st.Trial = cur, target, true
	if err := s.save(st); err != nil {
		return err
	}
	if len(s.SwitchHook) > 0 {
		if err := runHook(ctx, s.SwitchHook, target, s.SlotPath(target)); err != nil {
			// Without the switch the bootloader keeps the old slot.
			st.Active, st.Trial = cur, false
			_ = s.save(st)
			return fmt.Errorf("slots: switch hook: %w", err)
		}
	}
	return nil
}

// Confirm implements Installer: the booted slot holding version is good.
func (s *ABSlots) Confirm(ctx context.Context, version string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Load()
	if err != nil {
		return err
	}
	b, err := s.booted(st)
	if err != nil {
		return err
	}
	if st.Versions[b] != version {
		return fmt.Errorf("slots: booted slot %s holds %q, not %q", b, st.Versions[b], version)
	}
	if len(s.ConfirmHook) > 0 {
		if err := runHook(ctx, s.ConfirmHook, b, s.SlotPath(b)); err != nil {
			return fmt.Errorf("slots: confirm hook: %w", err)
		}
	}
	st.Active, st.Trial = b, false
	return s.save(st)
}

func runHook(ctx context.Context, argv []string, args ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string{}, argv[1:]...), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 300 {
			out = out[len(out)-300:]
		}
		return fmt.Errorf("%s: %w: %s", argv[0], err, out)
	}
	return nil
}

func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
