package agent

import (
	"crypto/rand"
	"crypto/sha256"
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

// bootTag is what check-ins send as their boot parameter: a short digest
// of the boot ID (the server only compares it; it need not learn the
// kernel's boot_id).
func bootTag(id string) string {
	sum := sha256.Sum256([]byte("otaflow boot\x00" + id))
	return hex.EncodeToString(sum[:8])
}
