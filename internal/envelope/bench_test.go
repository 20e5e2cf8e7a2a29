package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"io"
	"testing"
)

const benchSize = 4 << 20

func BenchmarkEncrypt(b *testing.B) {
	key := fixedKey(1)
	plain := randBytes(1, benchSize)
	var r bytes.Reader
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(plain)
		if _, err := Encrypt(io.Discard, &r, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	key := fixedKey(1)
	_, blob := seal(b, key, randBytes(1, benchSize), DefaultChunkLog2, 1)
	buf := make([]byte, 32<<10)
	var r bytes.Reader
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(blob)
		d, err := NewDecryptor(&r, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{d}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawGCM64KiB is the baseline: AES-256-GCM sealing in place with
// no framing at all.
func BenchmarkRawGCM64KiB(b *testing.B) {
	block, err := aes.NewCipher(fixedKey(1))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	const n = 64 << 10
	buf := make([]byte, n+TagSize)
	nonce := make([]byte, aead.NonceSize())
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		aead.Seal(buf[:0], nonce, buf[:n], nil)
	}
}
