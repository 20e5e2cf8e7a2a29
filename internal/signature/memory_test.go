package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
)

const (
	streamSize  = 64 << 20
	streamChunk = 32 << 10
)

// genImage writes a deterministic streamSize-byte image to w through one
// reused buffer, so generating it allocates nothing per chunk.
func genImage(buf []byte) func(io.Writer) {
	return func(w io.Writer) {
		for i := range streamSize / streamChunk {
			binary.LittleEndian.PutUint64(buf, uint64(i))
			w.Write(buf)
		}
	}
}

// Images can be hundreds of MiB: a Check must hash as it goes, never keep
// what it was given.
func TestStreamMemory(t *testing.T) {
	buf := make([]byte, streamChunk)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	gen := genImage(buf)
	h := sha256.New()
	gen(h)
	digest := h.Sum(nil)

	ecdsaSig, err := ecdsa.SignASN1(rand.Reader, p256A(), digest)
	if err != nil {
		t.Fatal(err)
	}
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey(), crypto.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	edSig := signEd25519Stream(t, edA(), gen)

	tests := []struct {
		name string
		sig  Signature
		key  Key
	}{
		{name: "ecdsa", sig: Signature{Raw: ecdsaSig}, key: trusted(t, "p256", p256A())},
		{name: "rsa", sig: Signature{Raw: rsaSig}, key: trusted(t, "rsa", rsaKey())},
		{name: "ed25519", sig: Signature{Raw: edSig}, key: trusted(t, "ed", edA())},
		{name: "ed25519 bundle", sig: Signature{Raw: edSig, Digest: digest}, key: trusted(t, "ed", edA())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCheck(tt.sig, []Key{tt.key})
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			gen(c)
			key, verr := c.Verify()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			if verr != nil || key.Name != tt.key.Name {
				t.Fatalf("Verify = %s, %v", key, verr)
			}
			// TotalAlloc also counts what was allocated and freed again.
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			total := after.TotalAlloc - before.TotalAlloc
			t.Logf("streamed %d MiB: heap grew %d bytes, %d bytes allocated", streamSize>>20, heap, total)
			if heap >= 1<<20 || total >= 1<<20 {
				t.Errorf("streaming %d MiB grew the heap by %d bytes and allocated %d bytes, want < 1 MiB each", streamSize>>20, heap, total)
			}
		})
	}
}
