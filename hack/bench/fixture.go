package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Fixture is what the load drivers and the server child share: one
// release (encrypted blob in BlobDir), one rollout selecting region=eu.
type Fixture struct {
	BlobDir      string `json:"blobDir"`
	ContentKey   []byte `json:"contentKey"`
	BlobDigest   string `json:"blobDigest"`
	BlobSize     int64  `json:"blobSize"`
	PlainSHA256  string `json:"plainSHA256"`
	PlainSize    int64  `json:"plainSize"`
	SigningSeed  []byte `json:"signingSeed"`
	FirstWavePct int    `json:"firstWavePct"`
	RolloutUID   string `json:"rolloutUID"`
	RolloutKey   string `json:"rolloutKey"`
	// P11: the release is a SWUpdate image with the plaintext hashes and
	// file name DDI clients check, so it reaches DDI devices as well as
	// native ones (the native API ignores the format).
	DDI       bool   `json:"ddi,omitempty"`
	PlainSHA1 string `json:"plainSHA1,omitempty"`
	PlainMD5  string `json:"plainMD5,omitempty"`
	// P11m: the release is a Mender artifact with its header recorded,
	// so it reaches mender-client devices as well as native ones.
	Mender bool `json:"mender,omitempty"`
}

const (
	benchNS      = "bench"
	benchRollout = "fw-2-eu"
	benchUID     = "bench-rollout-uid"
	deviceType   = "sensor-v1"
	runningVer   = "1.0.0"
	keyPool      = 4096 // distinct device key pairs, reused round-robin
)

// makeFixture encrypts a deterministic image of plainSize bytes into dir.
func makeFixture(dir string, plainSize int, firstWavePct int) (*Fixture, error) {
	blobs, err := blobstore.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, err
	}
	img := detBytes("image", plainSize)
	key := detBytes("content-key", 32)
	var enc bytes.Buffer
	h, err := envelope.NewHeader(key, envelope.DefaultChunkLog2)
	if err != nil {
		return nil, err
	}
	if _, err := envelope.EncryptWithHeader(&enc, bytes.NewReader(img), key, h); err != nil {
		return nil, err
	}
	w, err := blobs.Create(context.Background())
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(enc.Bytes()); err != nil {
		return nil, err
	}
	info, err := w.Commit(context.Background())
	if err != nil {
		return nil, err
	}
	plain := sha256.Sum256(img)
	plain1, plain5 := sha1.Sum(img), md5.Sum(img) // P11 (DDI clients' hashes)
	f := &Fixture{
		BlobDir: filepath.Join(dir, "blobs"), ContentKey: key, BlobDigest: info.Digest, BlobSize: info.Size,
		PlainSHA256: hex.EncodeToString(plain[:]), PlainSize: int64(plainSize),
		PlainSHA1: hex.EncodeToString(plain1[:]), PlainMD5: hex.EncodeToString(plain5[:]),
		SigningSeed: detBytes("signing", ed25519.SeedSize), FirstWavePct: firstWavePct,
		RolloutUID: benchUID, RolloutKey: benchNS + "/" + benchRollout,
	}
	return f, writeJSON(filepath.Join(dir, "fixture.json"), f)
}

func loadFixture(path string) (*Fixture, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f Fixture
	return &f, json.Unmarshal(b, &f)
}

// BlobPath is where the FS blob store keeps the blob.
func (f *Fixture) BlobPath() string {
	return filepath.Join(f.BlobDir, f.BlobDigest[:2], f.BlobDigest)
}

// Snapshot is the catalog the server serves: release fw-2 (2.0.0) and a
// rollout of region=eu devices in waves [first%, 10%, 100%], wave 0 open.
func (f *Fixture) Snapshot() *catalog.Snapshot {
	secName := "fw-2-key"
	keys := map[string]*corev1.Secret{benchNS + "/" + secName: {
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: secName, Labels: map[string]string{otav1.LabelReleaseUID: "uid-fw-2"}},
		Data:       map[string][]byte{otav1.ContentKeyField: f.ContentKey},
	}}
	rel := otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: "fw-2", UID: "uid-fw-2"},
		Spec: otav1.FirmwareReleaseSpec{
			Version: "2.0.0", SecurityVersion: 5,
			Compatibility: otav1.Compatibility{DeviceTypes: []string{deviceType}},
			Signature:     otav1.Signature{Value: "c2lnbmF0dXJl"},
		},
		Status: otav1.FirmwareReleaseStatus{
			Artifact: &otav1.Artifact{PlainSHA256: f.PlainSHA256, Size: f.PlainSize,
				EncryptedSHA256: f.BlobDigest, EncryptedSize: f.BlobSize, Suite: envelope.Suite, KeySecretName: secName, Version: "2.0.0", SecurityVersion: 5},
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
	if f.DDI { // P11
		rel.Spec.Format, rel.Spec.ArtifactFilename = otav1.FormatSWUpdate, "fw-2.swu"
		a := rel.Status.Artifact
		a.PlainSHA1, a.PlainMD5, a.Filename = f.PlainSHA1, f.PlainMD5, "fw-2.swu"
	}
	if f.Mender { // P11m
		rel.Spec.Format, rel.Spec.ArtifactFilename = otav1.FormatMender, "fw-2.mender"
		rel.Status.Artifact.Filename = "fw-2.mender"
		rel.Status.Artifact.Mender = &otav1.MenderArtifact{Name: "fw-2.0.0", DeviceTypes: []string{deviceType}, PayloadTypes: []string{"rootfs-image"}}
	}
	ro := otav1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: benchRollout, UID: k8stypes.UID(f.RolloutUID), CreationTimestamp: metav1.Now()},
		Spec: otav1.RolloutSpec{
			ReleaseRef: otav1.ReleaseReference{Name: "fw-2"},
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			Waves: []otav1.Wave{
				{Name: "canary", Devices: intstr.FromString(fmt.Sprintf("%d%%", f.FirstWavePct))},
				{Name: "early", Devices: intstr.FromString("10%")},
				{Name: "all", Devices: intstr.FromString("100%")},
			},
		},
		Status: otav1.RolloutStatus{Phase: otav1.RolloutProgressing, CurrentWave: 0},
	}
	// Seeded devices are cluster-wide (no tenant), as the single-team mode.
	return catalog.BuildWith(catalog.BuildOptions{ClusterWideDevices: true}, []otav1.Rollout{ro}, []otav1.FirmwareRelease{rel}, keys)
}

// Cutoffs of the fixture's percentage waves (no count waves, so no fleet
// sync is needed to know them).
func (f *Fixture) Cutoffs() []uint64 {
	return rollout.Cutoffs([]rollout.WaveSize{{Percent: f.FirstWavePct}, {Percent: 10}, {Percent: 100}}, nil)
}

type staticCutoffs []uint64

func (c staticCutoffs) Cutoffs(string) ([]uint64, bool) { return c, true }

// detBytes are n deterministic pseudo-random bytes (SHA-256 in counter mode).
func detBytes(label string, n int) []byte {
	out := make([]byte, 0, n+32)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		h := sha256.Sum256(append([]byte(label), ctr[:]...))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// Device material is derived from the index, so the load drivers can
// rebuild every bearer token without storing a million of them.
func deviceID(prefix string, i int) string { return fmt.Sprintf("%s%07d", prefix, i) }

func deviceToken(prefix string, i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("otaflow-bench-token/%s/%d", prefix, i)))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func tokenHash(tok string) []byte { h := sha256.Sum256([]byte(tok)); return h[:] }

var devicePubs = func() [][]byte {
	out := make([][]byte, keyPool)
	for i := range out {
		k, err := ecdh.X25519().NewPrivateKey(detBytes(fmt.Sprint("device-key-", i), 32))
		if err != nil {
			panic(err)
		}
		out[i] = k.PublicKey().Bytes()
	}
	return out
}()

// benchDevice is device i: half in region eu (the rollout's fleet).
func benchDevice(prefix string, i int, now time.Time) devicestore.Device {
	region := "eu"
	if i%2 == 1 {
		region = "us"
	}
	return devicestore.Device{
		ID: deviceID(prefix, i), Type: deviceType, KEM: "x25519",
		Labels:    map[string]string{"region": region, "site": fmt.Sprintf("site-%02d", i%64)},
		PublicKey: devicePubs[i%keyPool], TokenHash: tokenHash(deviceToken(prefix, i)),
		Version: runningVer, SecurityFloor: 1, EnrolledAt: now, LastSeen: now,
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
