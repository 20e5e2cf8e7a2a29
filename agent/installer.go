package agent

import "context"

// Image is a fully verified image ready to install: its plaintext matched
// plainSHA256 and its vendor signature verified.
type Image struct {
	Release         string // namespace/name of the FirmwareRelease
	Version         string
	SecurityVersion int64
	SHA256          string // hex SHA-256 of the plaintext
	Size            int64
	// Path is the staged plaintext, or "" when the Staging keeps no file.
	Path string
	// Rollback is set when this is a previous release offered after an abort.
	Rollback bool
}

// Installer writes verified images so that the next boot runs them.
type Installer interface {
	// Running returns the firmware version running now, or "" when the
	// installer cannot tell (the agent then uses its persisted version).
	Running(ctx context.Context) (string, error)
	// Install writes img so that the next boot tries it. It must not make
	// the old image unbootable until the new one is confirmed.
	Install(ctx context.Context, img Image) error
	// Confirm marks the running image, version, as good, so the
	// bootloader keeps it.
	Confirm(ctx context.Context, version string) error
}
