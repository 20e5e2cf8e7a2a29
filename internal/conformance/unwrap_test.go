package conformance

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

const (
	unwrapFile = "2-unwrap.json"
	// keywrapVectors are protocol/v1/keywrap's pinned wrapped keys (HPKE
	// sealing is randomized); every one is copied into unwrapFile, and the
	// refusals are derived from them.
	keywrapVectors = "../../protocol/v1/keywrap/testdata/vectors.json"
	keywrapSource  = "protocol/v1/keywrap/testdata/vectors.json"
	// unwrapFailed is the refusal class: keywrap.ErrUnwrap, the agent's
	// RefuseUnwrap code.
	unwrapFailed = "unwrap-failed"
)

// keywrapVector is protocol/v1/keywrap's vector format.
type keywrapVector struct {
	KEM        string `json:"kem"`
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	BlobDigest string `json:"blobDigest"`
	DeviceID   string `json:"deviceID"`
	Info       string `json:"info"`
	Wrapped    string `json:"wrapped"`
	ContentKey string `json:"contentKey"`
}

type unwrapDoc struct {
	fileHeader
	InfoPrefix string         `json:"infoPrefix"`
	Vectors    []unwrapVector `json:"vectors"`
}

type unwrapVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expect      string `json:"expect"`
	Source      string `json:"source,omitempty"`
	KEM         string `json:"kem"`
	// PrivateKey and PublicKey are the device's key pair.
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	// BlobDigest (the assignment's encryptedSHA256) and DeviceID are what
	// the device puts in info; Info is the result.
	BlobDigest string `json:"blobDigest"`
	DeviceID   string `json:"deviceID"`
	Info       string `json:"info"`
	Wrapped    string `json:"wrapped"`
	ContentKey string `json:"contentKey,omitempty"`
}

func readKeywrapVectors(t *testing.T) map[string]keywrapVector {
	t.Helper()
	raw, err := os.ReadFile(keywrapVectors)
	if err != nil {
		t.Fatal(err)
	}
	var vs []keywrapVector
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vs); err != nil {
		t.Fatalf("%s: %v", keywrapVectors, err)
	}
	m := map[string]keywrapVector{}
	for _, v := range vs {
		m[v.KEM] = v
	}
	for _, k := range []string{"x25519", "p256"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s has no %s vector", keywrapVectors, k)
		}
	}
	return m
}

func curveOf(t testing.TB, kem string) ecdh.Curve {
	switch kem {
	case "x25519":
		return ecdh.X25519()
	case "p256":
		return ecdh.P256()
	}
	t.Fatalf("unknown kem %q", kem)
	return nil
}

// otherDeviceKey is a fixed second device key for kem.
func otherDeviceKey(t testing.TB, kem string) *ecdh.PrivateKey {
	t.Helper()
	k, err := curveOf(t, kem).NewPrivateKey(label("other device key " + kem))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func infoHex(t *testing.T, digest, deviceID string) string {
	t.Helper()
	return hex.EncodeToString(keywrap.Info([32]byte(mustHex(t, "digest", digest)), deviceID))
}

func genUnwrap(t *testing.T) any {
	f := unwrapDoc{
		fileHeader: header("otaflow-conformance/v1 unwrap", "docs/envelope.md section 2, docs/protocol.md \"Unwrapping the content key\"",
			"Build info from blobDigest and deviceID (it must equal info), then HPKE base-mode SetupBaseR(enc = wrapped[:32 or 65], privateKey, info) and Open(aad = empty, wrapped[32 or 65:]); compare the verdict with expect, and for accept the result with contentKey.",
			class{Accept, "the wrapped key opens; the 32-byte result is contentKey"},
			class{unwrapFailed, "HPKE decapsulation or open fails, or wrapped has the wrong size (keywrap.ErrUnwrap, the agent's refusal code unwrap-failed)"}),
		InfoPrefix: hex.EncodeToString([]byte("otaflow-enc/v1 key")),
	}
	kw := readKeywrapVectors(t)
	for _, kem := range []string{"x25519", "p256"} {
		v := kw[kem]
		encSize := map[string]int{"x25519": 32, "p256": 65}[kem]
		w := mustHex(t, "wrapped", v.Wrapped)
		add := func(name, desc, expect, deviceID, digest string, priv *ecdh.PrivateKey, wrapped []byte) {
			uv := unwrapVector{
				Name: kem + "-" + name, Description: desc, Expect: expect, KEM: kem,
				PrivateKey: v.PrivateKey, PublicKey: v.PublicKey,
				BlobDigest: digest, DeviceID: deviceID, Info: infoHex(t, digest, deviceID),
				Wrapped: hex.EncodeToString(wrapped),
			}
			if priv != nil {
				uv.PrivateKey, uv.PublicKey = hex.EncodeToString(priv.Bytes()), hex.EncodeToString(priv.PublicKey().Bytes())
			}
			if expect == Accept {
				uv.Source, uv.ContentKey = keywrapSource, v.ContentKey
			}
			f.Vectors = append(f.Vectors, uv)
		}
		add("accept", fmt.Sprintf("content key wrapped for device %q and the blob digest (copied from %s)", v.DeviceID, keywrapSource),
			Accept, v.DeviceID, v.BlobDigest, nil, w)
		add("other-device", "the device ID in info is another device's (\"sensor-00043\")", unwrapFailed, "sensor-00043", v.BlobDigest, nil, w)
		add("device-id-prefix", "the device ID in info is a prefix of the right one (\"sensor-0004\"): the ID runs to the end of info, with no length", unwrapFailed, "sensor-0004", v.BlobDigest, nil, w)
		otherDigest := hex.EncodeToString(flip(mustHex(t, "digest", v.BlobDigest), 31, 0x01))
		add("other-blob", "the blob digest in info differs in its last bit (the wrapped key is for another blob)", unwrapFailed, v.DeviceID, otherDigest, nil, w)
		add("wrong-private-key", "opened with another device's private key", unwrapFailed, v.DeviceID, v.BlobDigest, otherDeviceKey(t, kem), w)
		if kem == "x25519" {
			add("tampered-enc", "a bit of enc (the ephemeral public key) flipped", unwrapFailed, v.DeviceID, v.BlobDigest, nil, flip(w, 0, 0x01))
			add("zero-enc", "enc is the all-zero (small-order) point: the shared secret would be zero", unwrapFailed, v.DeviceID, v.BlobDigest, nil, cat(make([]byte, 32), w[32:]))
		} else {
			add("tampered-enc", "the last byte of enc's Y coordinate changed: enc is no longer on the curve", unwrapFailed, v.DeviceID, v.BlobDigest, nil, flip(w, 64, 0x01))
			add("enc-other-point", "enc replaced by another valid point (the device's own public key)", unwrapFailed, v.DeviceID, v.BlobDigest, nil, cat(mustHex(t, "publicKey", v.PublicKey), w[65:]))
			add("enc-compressed-prefix", "enc's 0x04 prefix changed to 0x02", unwrapFailed, v.DeviceID, v.BlobDigest, nil, cat([]byte{0x02}, w[1:]))
		}
		add("tampered-ciphertext", "a bit of the encrypted content key flipped", unwrapFailed, v.DeviceID, v.BlobDigest, nil, flip(w, encSize+3, 0x01))
		add("tampered-tag", "a bit of the AEAD tag flipped", unwrapFailed, v.DeviceID, v.BlobDigest, nil, flip(w, len(w)-1, 0x80))
		add("truncated", "the last byte of wrapped missing", unwrapFailed, v.DeviceID, v.BlobDigest, nil, w[:len(w)-1])
		add("extended", "a zero byte appended to wrapped", unwrapFailed, v.DeviceID, v.BlobDigest, nil, cat(w, []byte{0}))
		// Domain separation: a sealed 32-character token has a wrapped
		// key's size; with the blob digest set to its server key ID only
		// the info prefixes differ.
		tv := tokensealVectorOf(t, kem, keywrap.ContentKeySize)
		tvPriv, err := curveOf(t, kem).NewPrivateKey(mustHex(t, "privateKey", tv.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		add("sealed-token", "5-sealed-token.json's sealed 32-character token (a wrapped key's size) presented as a wrapped key, with blobDigest = its server key ID: the info prefixes differ",
			unwrapFailed, tv.DeviceID, tv.ServerKeyID, tvPriv, mustHex(t, "sealed", tv.Sealed))
	}
	return f
}

// TestUnwrap opens every vector of 2-unwrap.json with protocol/v1/keywrap.
func TestUnwrap(t *testing.T) {
	var f unwrapDoc
	load(t, unwrapFile, &f)
	var names, descs, expects []string
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			kem, err := keywrap.ParseKEM(v.KEM)
			if err != nil {
				t.Fatal(err)
			}
			priv, err := curveOf(t, v.KEM).NewPrivateKey(mustHex(t, "privateKey", v.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(priv.PublicKey().Bytes()); got != v.PublicKey {
				t.Fatalf("publicKey is not privateKey's: %s", got)
			}
			if _, err := keywrap.ParsePublicKey(kem, priv.PublicKey().Bytes()); err != nil {
				t.Fatalf("the device key would not enroll: %v", err)
			}
			digest := mustHex(t, "blobDigest", v.BlobDigest)
			if len(digest) != 32 {
				t.Fatal("blobDigest is not 32 bytes")
			}
			if got := hex.EncodeToString(keywrap.Info([32]byte(digest), v.DeviceID)); got != v.Info || v.Info[:36] != f.InfoPrefix {
				t.Fatalf("info = %s, want %s", got, v.Info)
			}
			key, err := keywrap.Unwrap(kem, priv, mustHex(t, "wrapped", v.Wrapped), [32]byte(digest), v.DeviceID)
			got := Accept
			switch {
			case errors.Is(err, keywrap.ErrUnwrap):
				got = unwrapFailed
			case err != nil:
				t.Fatalf("unclassified error %v", err)
			}
			if got != v.Expect {
				t.Fatalf("verdict %s (%v), want %s", got, err, v.Expect)
			}
			if (v.Expect == Accept) != (v.ContentKey != "") || hex.EncodeToString(key) != v.ContentKey {
				t.Fatalf("content key %x, vector says %q", key, v.ContentKey)
			}
		})
	}
	checkNames(t, unwrapFile, names, descs)
	t.Logf("%s: %d vectors %v", unwrapFile, len(f.Vectors), count(expects))
}

// TestUnwrapKeepsKeywrapVectors: every vector of protocol/v1/keywrap is in
// 2-unwrap.json with the same values.
func TestUnwrapKeepsKeywrapVectors(t *testing.T) {
	var f unwrapDoc
	load(t, unwrapFile, &f)
	for kem, kv := range readKeywrapVectors(t) {
		found := false
		for _, v := range f.Vectors {
			if v.Source != keywrapSource || v.KEM != kem {
				continue
			}
			found = true
			if v.Expect != Accept || v.PrivateKey != kv.PrivateKey || v.PublicKey != kv.PublicKey || v.BlobDigest != kv.BlobDigest ||
				v.DeviceID != kv.DeviceID || v.Info != kv.Info || v.Wrapped != kv.Wrapped || v.ContentKey != kv.ContentKey {
				t.Errorf("%s: differs from %s", v.Name, keywrapSource)
			}
		}
		if !found {
			t.Errorf("%s vector of %s missing from %s", kem, keywrapSource, unwrapFile)
		}
	}
}
