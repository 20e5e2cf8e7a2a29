package agent

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
)

// defaultBootID returns the Linux kernel's boot ID when there is one, or
// else a random ID fixed for this Agent (each process start then counts as
// a boot).
func defaultBootID() func() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return func() string { return id }
		}
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	return func() string { return id }
}
