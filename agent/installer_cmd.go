package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Command installs by running a command with the staged image, for
// devices that already have an update tool (swupdate, rauc, a vendor
// flasher). The command gets the image path as its last argument and the
// image's details in the environment:
//
//	OTA_IMAGE, OTA_VERSION, OTA_SECURITY_VERSION, OTA_SHA256, OTA_RELEASE, OTA_ROLLBACK
//
// A non-zero exit fails the update with the command's last output. The
// running version is read from VersionFile (one line), if set.
type Command struct {
	Argv        []string // argv[0] and leading arguments
	VersionFile string
	// ConfirmArgv, when set, runs after a successful boot with the version
	// as last argument.
	ConfirmArgv []string
}

// Running implements Installer.
func (c *Command) Running(context.Context) (string, error) {
	if c.VersionFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.VersionFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Install implements Installer.
func (c *Command) Install(ctx context.Context, img Image) error {
	if len(c.Argv) == 0 {
		return errors.New("install command not configured")
	}
	if img.Path == "" {
		return errors.New("the image was not staged to a file (use FileStaging)")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], append(append([]string{}, c.Argv[1:]...), img.Path)...)
	cmd.Env = append(os.Environ(),
		"OTA_IMAGE="+img.Path, "OTA_VERSION="+img.Version,
		"OTA_SECURITY_VERSION="+strconv.FormatInt(img.SecurityVersion, 10),
		"OTA_SHA256="+img.SHA256, "OTA_RELEASE="+img.Release,
		"OTA_ROLLBACK="+strconv.FormatBool(img.Rollback))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if len(out) > 300 {
			out = out[len(out)-300:]
		}
		return fmt.Errorf("%s: %w: %s", c.Argv[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Confirm implements Installer.
func (c *Command) Confirm(ctx context.Context, version string) error {
	if len(c.ConfirmArgv) == 0 {
		return nil
	}
	return runHook(ctx, c.ConfirmArgv, version)
}
